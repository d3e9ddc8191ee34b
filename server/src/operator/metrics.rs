//! `/metrics`: the server's state in the Prometheus text exposition format (version 0.0.4),
//! for the monitoring a province already runs: agents connected, frames sent and dropped per
//! station, what each agent last reported (played, lost, on air) and how long ago, and the
//! state of every loudspeaker cluster an agent watches (`radio_cluster_up`).
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
    out
}

/// `radio_amplifier_on`: each amplifier's state, from its agent's latest journaled switch.
fn render_amplifiers(out: &mut String, stations: &[StationMetrics]) {
    let _ = writeln!(
        out,
        "# HELP radio_amplifier_on 1 while the station's amplifier is switched on, 0 while off,          as its agent last journaled (`output` is `box` for the whole box's).
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
