//! `/metrics`: the server's state in the Prometheus text exposition format (version 0.0.4),
//! for the monitoring a province already runs: agents connected, frames sent and dropped per
//! station, what each agent last reported (played, lost, on air) and how long ago, and the
//! state of every loudspeaker cluster an agent watches (`radio_cluster_up`), and each station's
//! box health (`radio_box_*`, with `radio_box_warning` per warning kind).
//!
//! Station series carry the station id and its Vietnamese name as labels. The agent-reported
//! figures are gauges, not counters: they restart from zero when the agent restarts.

use std::fmt::Write;

use radio_proto::ClusterState;

use crate::link::server::{AgentSnapshot, Server};

/// One station's row: its id, Vietnamese name, and what the server knows of its agent.
#[derive(Debug, Clone)]
pub struct StationMetrics {
    pub id: String,
    pub name: String,
    pub agent: Option<AgentSnapshot>,
}

/// Every station of `server`'s district, with its agent if it ever connected this run.
pub fn station_metrics(server: &Server) -> Vec<StationMetrics> {
    let mut agents: std::collections::BTreeMap<String, AgentSnapshot> = server
        .agents()
        .into_iter()
        .map(|a| (a.commune.clone(), a))
        .collect();
    server
        .district()
        .stations
        .iter()
        .map(|s| StationMetrics {
            id: s.id.clone(),
            name: s.name.clone(),
            agent: agents.remove(&s.id),
        })
        .collect()
}

/// Escapes a label value: backslash, double quote and line feed, as the format requires.
fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

struct Family<'a> {
    name: &'a str,
    kind: &'a str,
    help: &'a str,
}

const FAMILIES: [Family<'static>; 9] = [
    Family {
        name: "radio_agent_connected",
        kind: "gauge",
        help: "1 while the station's agent has a session with this server.",
    },
    Family {
        name: "radio_agent_sessions_total",
        kind: "counter",
        help: "Sessions the station's agent established since the server started.",
    },
    Family {
        name: "radio_frames_sent_total",
        kind: "counter",
        help: "Audio frames sent to the station's agent since the server started.",
    },
    Family {
        name: "radio_frames_dropped_total",
        kind: "counter",
        help: "Audio frames dropped for the station's agent (its queue was full: a slow link).",
    },
    Family {
        name: "radio_agent_frames_played",
        kind: "gauge",
        help: "Frames the agent reports played in their slot since it started.",
    },
    Family {
        name: "radio_agent_frames_lost",
        kind: "gauge",
        help: "Frames the agent reports lost (concealed) since it started.",
    },
    Family {
        name: "radio_agent_on_air",
        kind: "gauge",
        help: "1 while the agent reports that it feeds the station's transmitter.",
    },
    Family {
        name: "radio_agent_session_seconds",
        kind: "gauge",
        help: "Seconds the station's current session has been up: its uptime as this server \
               sees it (absent while not connected).",
    },
    Family {
        name: "radio_agent_heartbeat_age_seconds",
        kind: "gauge",
        help: "Seconds since the agent's last heartbeat (absent if none this server run).",
    },
];

/// The exposition text for `stations`.
pub fn render(stations: &[StationMetrics]) -> String {
    let mut out = String::new();
    let connected = stations
        .iter()
        .filter(|s| s.agent.as_ref().is_some_and(|a| a.connected))
        .count();
    let _ = writeln!(
        out,
        "# HELP radio_agents_connected Agents with a session now.\n\
         # TYPE radio_agents_connected gauge\nradio_agents_connected {connected}"
    );
    let _ = writeln!(
        out,
        "# HELP radio_stations Stations of the district.\n# TYPE radio_stations gauge\n\
         radio_stations {}",
        stations.len()
    );
    for family in &FAMILIES {
        let _ = writeln!(out, "# HELP {} {}", family.name, family.help);
        let _ = writeln!(out, "# TYPE {} {}", family.name, family.kind);
        for station in stations {
            let agent = station.agent.as_ref();
            let heartbeat = agent.and_then(|a| a.last_heartbeat.as_ref());
            let value: Option<f64> = match family.name {
                "radio_agent_connected" => {
                    Some(f64::from(u8::from(agent.is_some_and(|a| a.connected))))
                }
                "radio_agent_sessions_total" => Some(agent.map_or(0, |a| a.sessions) as f64),
                "radio_frames_sent_total" => Some(agent.map_or(0, |a| a.frames_sent) as f64),
                "radio_frames_dropped_total" => Some(agent.map_or(0, |a| a.frames_dropped) as f64),
                "radio_agent_frames_played" => heartbeat.map(|h| h.frames_played as f64),
                "radio_agent_frames_lost" => heartbeat.map(|h| h.frames_lost as f64),
                "radio_agent_on_air" => heartbeat.map(|h| f64::from(u8::from(h.on_air))),
                "radio_agent_session_seconds" => {
                    agent.and_then(|a| a.session_age).map(|d| d.as_secs_f64())
                }
                "radio_agent_heartbeat_age_seconds" => agent
                    .and_then(|a| a.last_heartbeat_age)
                    .map(|d| d.as_secs_f64()),
                _ => None,
            };
            if let Some(value) = value {
                let _ = writeln!(
                    out,
                    "{}{{station=\"{}\",name=\"{}\"}} {value}",
                    family.name,
                    escape(&station.id),
                    escape(&station.name)
                );
            }
        }
    }
    // Watched clusters only: a cluster that follows its station has no state of its own, and
    // a series per configured cluster (554 in Bình Sơn) would mostly repeat the station's.
    let _ = writeln!(
        out,
        "# HELP radio_cluster_up 1 while the loudspeaker cluster's receiver hears the station, \
         0 when it is down, as its agent last recorded (clusters the agent watches only).\n\
         # TYPE radio_cluster_up gauge"
    );
    for station in stations {
        let Some(agent) = &station.agent else {
            continue;
        };
        for (cluster, seen) in &agent.clusters {
            let _ = writeln!(
                out,
                "radio_cluster_up{{station=\"{}\",name=\"{}\",cluster=\"{}\"}} {}",
                escape(&station.id),
                escape(&station.name),
                escape(cluster),
                u8::from(seen.state == ClusterState::Up)
            );
        }
    }
    render_amplifiers(&mut out, stations);
    render_health(&mut out, stations);
    out
}

/// `radio_amplifier_on`: each amplifier's state, from its agent's latest journaled switch.
fn render_amplifiers(out: &mut String, stations: &[StationMetrics]) {
    let _ = writeln!(
        out,
        "# HELP radio_amplifier_on 1 while the station's amplifier is switched on, 0 while off, \
         as its agent last journaled (`output` is `box` for the whole box's).\n\
         # TYPE radio_amplifier_on gauge"
    );
    for station in stations {
        let Some(agent) = &station.agent else {
            continue;
        };
        for (output, seen) in &agent.amplifiers {
            let _ = writeln!(
                out,
                "radio_amplifier_on{{station=\"{}\",name=\"{}\",output=\"{}\"}} {}",
                escape(&station.id),
                escape(&station.name),
                escape(output),
                u8::from(seen.on)
            );
        }
    }
}

type HealthGauge = (
    &'static str,
    &'static str,
    fn(&radio_proto::BoxHealth) -> Option<f64>,
);

/// The box health gauges, absent while unknown (a VM has no temperature, not 0 °C).
const HEALTH_GAUGES: [HealthGauge; 6] = [
    (
        "radio_box_temperature_celsius",
        "The hottest thermal zone of the station's box, as its agent last reported.",
        |h| h.temperature_c(),
    ),
    (
        "radio_box_disk_free_percent",
        "Free space on the file system of the agent's state directory, in per cent.",
        |h| h.disk_free_percent(),
    ),
    (
        "radio_box_memory_available_percent",
        "Memory available on the station's box, in per cent of the total.",
        |h| h.memory_available_percent(),
    ),
    (
        "radio_box_load1",
        "The 1-minute load average of the station's box.",
        |h| h.load1(),
    ),
    (
        "radio_box_uptime_seconds",
        "Seconds since the station's box booted.",
        |h| h.uptime_s.map(|s| s as f64),
    ),
    (
        "radio_box_clock_sync_age_seconds",
        "Seconds since the box's clock was last known synchronised (systemd-timesyncd).",
        |h| h.since_clock_sync_s.map(|s| s as f64),
    ),
];

/// The box health series: a gauge per figure, and `radio_box_warning` per warning kind (1
/// while on) for every station that reported its health this server run.
fn render_health(out: &mut String, stations: &[StationMetrics]) {
    let reported: Vec<(&StationMetrics, &crate::health::HealthSnapshot)> = stations
        .iter()
        .filter_map(|s| Some((s, s.agent.as_ref()?.health.as_ref()?)))
        .collect();
    for (name, help, value) in HEALTH_GAUGES {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        for (station, health) in &reported {
            if let Some(v) = value(&health.report) {
                let _ = writeln!(
                    out,
                    "{name}{{station=\"{}\",name=\"{}\"}} {v}",
                    escape(&station.id),
                    escape(&station.name)
                );
            }
        }
    }
    let _ = writeln!(
        out,
        "# HELP radio_box_warning 1 while the station's box health warning of this kind is on \
         (hot, disk-full, output-failing; thresholds in [health]).\n# TYPE radio_box_warning gauge"
    );
    for (station, health) in &reported {
        for kind in crate::health::WarningKind::ALL {
            let _ = writeln!(
                out,
                "radio_box_warning{{station=\"{}\",name=\"{}\",kind=\"{}\"}} {}",
                escape(&station.id),
                escape(&station.name),
                kind.as_str(),
                u8::from(health.warnings.contains_key(&kind))
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use radio_proto::Heartbeat;

    fn stations() -> Vec<StationMetrics> {
        vec![
            StationMetrics {
                id: "binh-trung".into(),
                name: "Bình Trung".into(),
                agent: Some(AgentSnapshot {
                    commune: "binh-trung".into(),
                    connected: true,
                    sessions: 3,
                    frames_sent: 1500,
                    frames_dropped: 2,
                    last_heartbeat: Some(Heartbeat {
                        sequence: 9,
                        unix_ms: 0,
                        frames_received: 1500,
                        frames_played: 1490,
                        frames_lost: 10,
                        on_air: true,
                    }),
                    last_heartbeat_age: Some(std::time::Duration::from_millis(1500)),
                    session_age: Some(std::time::Duration::from_secs(3600)),
                    link_since: None,
                    clusters: [("c01", ClusterState::Up), ("c02", ClusterState::Down)]
                        .into_iter()
                        .map(|(id, state)| {
                            (
                                id.to_owned(),
                                crate::records::clusters::ClusterSeen {
                                    state,
                                    reason: "test".into(),
                                    unix_ms: 0,
                                },
                            )
                        })
                        .collect(),
                    amplifiers: [(
                        "box".to_owned(),
                        crate::records::clusters::AmplifierSeen {
                            on: true,
                            reason: "lead".into(),
                            unix_ms: 0,
                        },
                    )]
                    .into_iter()
                    .collect(),
                    health: Some(crate::health::HealthSnapshot {
                        report: radio_proto::BoxHealth {
                            temperature_mc: Some(81_500),
                            disk: Some((5, 100)),
                            ..radio_proto::BoxHealth::default()
                        },
                        warnings: [(crate::health::WarningKind::Hot, "hot".to_owned())]
                            .into_iter()
                            .collect(),
                    }),
                }),
            },
            StationMetrics {
                id: "thi-tran-chau-o".into(),
                name: "Thị trấn \"Châu\" Ổ\\".into(),
                agent: None,
            },
        ]
    }

    #[test]
    fn the_exposition_parses_and_says_what_the_server_knows() {
        let text = render(&stations());
        let lines = text.lines().map(|l| Ok(l.to_owned()));
        let scrape = prometheus_parse::Scrape::parse(lines).expect("valid exposition format");
        let value = |metric: &str, station: &str| {
            scrape
                .samples
                .iter()
                .find(|s| s.metric == metric && s.labels.get("station") == Some(station))
                .map(|s| match s.value {
                    prometheus_parse::Value::Gauge(v)
                    | prometheus_parse::Value::Counter(v)
                    | prometheus_parse::Value::Untyped(v) => v,
                    _ => f64::NAN,
                })
        };
        assert_eq!(value("radio_agent_connected", "binh-trung"), Some(1.0));
        assert_eq!(value("radio_agent_connected", "thi-tran-chau-o"), Some(0.0));
        assert_eq!(value("radio_frames_sent_total", "binh-trung"), Some(1500.0));
        assert_eq!(value("radio_frames_dropped_total", "binh-trung"), Some(2.0));
        assert_eq!(value("radio_agent_frames_lost", "binh-trung"), Some(10.0));
        assert_eq!(value("radio_agent_on_air", "binh-trung"), Some(1.0));
        assert_eq!(
            value("radio_agent_heartbeat_age_seconds", "binh-trung"),
            Some(1.5)
        );
        assert_eq!(
            value("radio_agent_session_seconds", "binh-trung"),
            Some(3600.0)
        );
        // Nothing reported is absent, not zero.
        assert_eq!(value("radio_agent_on_air", "thi-tran-chau-o"), None);
        assert_eq!(
            value("radio_agent_session_seconds", "thi-tran-chau-o"),
            None
        );
        // One series per watched cluster; none for a station whose clusters all follow it.
        let clusters: Vec<(&str, &str, f64)> = scrape
            .samples
            .iter()
            .filter(|s| s.metric == "radio_cluster_up")
            .map(|s| {
                let prometheus_parse::Value::Gauge(v) = s.value else {
                    panic!("radio_cluster_up is a gauge: {s:?}");
                };
                (
                    s.labels.get("station").unwrap_or_default(),
                    s.labels.get("cluster").unwrap_or_default(),
                    v,
                )
            })
            .collect();
        assert_eq!(
            clusters,
            [("binh-trung", "c01", 1.0), ("binh-trung", "c02", 0.0)]
        );
        let amplifier = scrape
            .samples
            .iter()
            .find(|s| s.metric == "radio_amplifier_on")
            .expect("the box's amplifier");
        assert_eq!(amplifier.labels.get("output"), Some("box"));
        assert_eq!(amplifier.labels.get("station"), Some("binh-trung"));
        assert!(matches!(amplifier.value, prometheus_parse::Value::Gauge(v) if v == 1.0));
        // Box health: the known figures, unknown ones absent, a warning per kind.
        assert_eq!(
            value("radio_box_temperature_celsius", "binh-trung"),
            Some(81.5)
        );
        assert_eq!(
            value("radio_box_disk_free_percent", "binh-trung"),
            Some(5.0)
        );
        assert_eq!(value("radio_box_load1", "binh-trung"), None);
        assert_eq!(
            value("radio_box_temperature_celsius", "thi-tran-chau-o"),
            None
        );
        let warnings: Vec<(&str, f64)> = scrape
            .samples
            .iter()
            .filter(|s| s.metric == "radio_box_warning")
            .map(|s| {
                let prometheus_parse::Value::Gauge(v) = s.value else {
                    panic!("radio_box_warning is a gauge: {s:?}");
                };
                (s.labels.get("kind").unwrap_or_default(), v)
            })
            .collect();
        assert_eq!(
            warnings,
            [("hot", 1.0), ("disk-full", 0.0), ("output-failing", 0.0)]
        );
        let connected = scrape
            .samples
            .iter()
            .find(|s| s.metric == "radio_agents_connected")
            .expect("total");
        assert!(matches!(connected.value, prometheus_parse::Value::Gauge(v) if v == 1.0));
        // The Vietnamese name survives, quotes and backslashes escaped (this parser hands
        // label values back still escaped).
        let named = scrape
            .samples
            .iter()
            .find(|s| s.labels.get("station") == Some("thi-tran-chau-o"))
            .expect("sample");
        let unescaped = named
            .labels
            .get("name")
            .map(|v| v.replace("\\\"", "\"").replace("\\\\", "\\"));
        assert_eq!(unescaped.as_deref(), Some("Thị trấn \"Châu\" Ổ\\"));
    }
}
