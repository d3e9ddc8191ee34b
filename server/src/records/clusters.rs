//! What the server knows of each station's loudspeaker clusters, live: the latest state of
//! every cluster the station's agent watches (its journal's `Cluster` records), and the view
//! of all the district's clusters for `/api/v1/stations`, `/metrics` and the dashboard.
//!
//! An agent watches the clusters behind its RTP sinks that name one (`cluster=c01`). Every
//! other cluster — wired cable, FM — has no health of its own: it works when its station
//! works, and is shown as following the station. A cluster an agent names that the district
//! does not have (`c99` at a 10-cluster station, `c1` for `c01`) is still shown, after the
//! configured ones, so the misconfiguration is seen rather than its cluster silently missing.
//!
//! The same records give each amplifier's state (the journal's `Amplifier` switches), kept
//! alongside for `/metrics` and the dashboard.
//!
//! The states are kept in memory, updated as journal batches are stored, and saved beside the
//! records as one small snapshot per agent, read back when the server starts (records
//! acknowledged in an earlier run are gone from the agent, so it would not send them again;
//! reading an agent's history back instead would cost years of heartbeats per agent).

use std::collections::BTreeMap;

use radio_config::Station;
use radio_proto::{ClusterState, JournalEvent, JournalRecord};
use serde::{Deserialize, Serialize};

/// Distinct clusters kept per agent. A station has a few dozen; the bound only keeps an agent
/// that names ever new ids (a bug, a hostile certificate holder) from growing the server's
/// memory without end.
pub const MAX_WATCHED_CLUSTERS: usize = 256;

/// Distinct amplifiers kept per agent (a station has one, or one per output).
pub const MAX_AMPLIFIERS: usize = 64;

/// The latest switch of one amplifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AmplifierSeen {
    pub on: bool,
    /// The rule that switched it, as the agent wrote it (`lead`, `idle`, …).
    pub reason: String,
    /// The record's time (the agent's clock), Unix milliseconds.
    pub unix_ms: u64,
}

/// The last record of one watched cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterSeen {
    pub state: ClusterState,
    /// What showed it, as the agent wrote it.
    pub reason: String,
    /// The record's time (the agent's clock), Unix milliseconds.
    pub unix_ms: u64,
}

/// One agent's watched clusters, by id within the station (`c01`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WatchedClusters {
    clusters: BTreeMap<String, ClusterSeen>,
    /// The station's amplifiers, by output name (`box`, `c01`).
    amplifiers: BTreeMap<String, AmplifierSeen>,
    /// The last record applied, (journal id, sequence): a batch uploaded again after a lost
    /// acknowledgement must not take the states back to older ones.
    last: Option<(u64, u64)>,
}

impl WatchedClusters {
    /// Applies `agent`'s journal record; records come in the journal's order, so the newest
    /// wins. `false` when a cluster record was dropped because of [`MAX_WATCHED_CLUSTERS`].
    pub fn apply(&mut self, journal_id: u64, record: &JournalRecord) -> bool {
        if let Some((journal, seq)) = self.last {
            if journal == journal_id && record.seq <= seq {
                return true;
            }
        }
        self.last = Some((journal_id, record.seq));
        match &record.event {
            // A new run watches what its configuration says now; what the previous run saw
            // may describe clusters it no longer feeds.
            JournalEvent::ProcessStart { .. } => {
                self.clusters.clear();
                self.amplifiers.clear();
            }
            JournalEvent::Amplifier { output, on, reason } => {
                if self.amplifiers.len() >= MAX_AMPLIFIERS && !self.amplifiers.contains_key(output)
                {
                    return false;
                }
                self.amplifiers.insert(
                    output.clone(),
                    AmplifierSeen {
                        on: *on,
                        reason: reason.clone(),
                        unix_ms: record.unix_ms,
                    },
                );
            }
            JournalEvent::Cluster {
                cluster,
                state,
                reason,
            } => {
                if self.clusters.len() >= MAX_WATCHED_CLUSTERS
                    && !self.clusters.contains_key(cluster)
                {
                    return false;
                }
                self.clusters.insert(
                    cluster.clone(),
                    ClusterSeen {
                        state: *state,
                        reason: reason.clone(),
                        unix_ms: record.unix_ms,
                    },
                );
            }
            _ => {}
        }
        true
    }

    /// The form kept in the store (`UptimeJournal::save_clusters`), so a restarted server
    /// knows the states without reading the agent's whole history back.
    pub fn to_bytes(&self) -> Vec<u8> {
        let saved = Saved {
            last: self.last,
            clusters: self
                .clusters
                .iter()
                .map(|(id, seen)| SavedCluster {
                    id: id.clone(),
                    up: seen.state == ClusterState::Up,
                    reason: seen.reason.clone(),
                    unix_ms: seen.unix_ms,
                })
                .collect(),
            amplifiers: self
                .amplifiers
                .iter()
                .map(|(output, seen)| SavedAmplifier {
                    output: output.clone(),
                    on: seen.on,
                    reason: seen.reason.clone(),
                    unix_ms: seen.unix_ms,
                })
                .collect(),
        };
        serde_json::to_vec(&saved).unwrap_or_default()
    }

    /// Reads [`WatchedClusters::to_bytes`] back; `None` for bytes that are not that form.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let saved: Saved = serde_json::from_slice(bytes).ok()?;
        Some(WatchedClusters {
            last: saved.last,
            clusters: saved
                .clusters
                .into_iter()
                .take(MAX_WATCHED_CLUSTERS)
                .map(|c| {
                    let state = if c.up {
                        ClusterState::Up
                    } else {
                        ClusterState::Down
                    };
                    (
                        c.id,
                        ClusterSeen {
                            state,
                            reason: c.reason,
                            unix_ms: c.unix_ms,
                        },
                    )
                })
                .collect(),
            amplifiers: saved
                .amplifiers
                .into_iter()
                .take(MAX_AMPLIFIERS)
                .map(|a| {
                    (
                        a.output,
                        AmplifierSeen {
                            on: a.on,
                            reason: a.reason,
                            unix_ms: a.unix_ms,
                        },
                    )
                })
                .collect(),
        })
    }

    /// The station's amplifiers, by output name, as last switched.
    pub fn amplifiers(&self) -> &BTreeMap<String, AmplifierSeen> {
        &self.amplifiers
    }

    /// The watched clusters, by id within the station.
    pub fn clusters(&self) -> &BTreeMap<String, ClusterSeen> {
        &self.clusters
    }
}

/// [`WatchedClusters`] as stored.
#[derive(Serialize, Deserialize)]
struct Saved {
    last: Option<(u64, u64)>,
    clusters: Vec<SavedCluster>,
    /// Absent from snapshots saved before amplifiers were journaled.
    #[serde(default)]
    amplifiers: Vec<SavedAmplifier>,
}

#[derive(Serialize, Deserialize)]
struct SavedAmplifier {
    output: String,
    on: bool,
    reason: String,
    unix_ms: u64,
}

#[derive(Serialize, Deserialize)]
struct SavedCluster {
    id: String,
    up: bool,
    reason: String,
    unix_ms: u64,
}

/// A cluster's state as shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClusterHealth {
    /// Watched, and its receiver hears the station.
    Up,
    /// Watched, and its receiver is unreachable or stopped reporting.
    Down,
    /// Not watched by the agent: it works when the station's output works.
    FollowsStation,
}

/// One cluster of a station, in `GET /api/v1/stations`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterView {
    /// `binh-trung/c01`.
    pub id: String,
    pub state: ClusterHealth,
    /// What the agent said showed the state; empty when it follows the station.
    pub reason: String,
    /// When the agent recorded the state (its clock), Unix milliseconds; `None` when it
    /// follows the station.
    pub since: Option<u64>,
    /// The district's configuration has this cluster; `false` for one only the agent names.
    pub configured: bool,
}

/// Every cluster of `station`: its configured ones in order, then the ones its agent watches
/// that the district does not have.
pub fn station_clusters(
    station: &Station,
    watched: Option<&BTreeMap<String, ClusterSeen>>,
) -> Vec<ClusterView> {
    let empty = BTreeMap::new();
    let watched = watched.unwrap_or(&empty);
    let view = |id: String, seen: Option<&ClusterSeen>, configured| match seen {
        Some(seen) => ClusterView {
            id,
            state: match seen.state {
                ClusterState::Up => ClusterHealth::Up,
                ClusterState::Down => ClusterHealth::Down,
            },
            reason: seen.reason.clone(),
            since: Some(seen.unix_ms),
            configured,
        },
        None => ClusterView {
            id,
            state: ClusterHealth::FollowsStation,
            reason: String::new(),
            since: None,
            configured,
        },
    };
    let prefix = format!("{}/", station.id);
    let configured = station.cluster_ids();
    let mut out: Vec<ClusterView> = configured
        .iter()
        .map(|id| {
            let local = id.strip_prefix(&prefix).unwrap_or(id);
            view(id.clone(), watched.get(local), true)
        })
        .collect();
    for (local, seen) in watched {
        let id = format!("{prefix}{local}");
        if !configured.contains(&id) {
            out.push(view(id, Some(seen), false));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use radio_config::StationKind;

    fn record(seq: u64, event: JournalEvent) -> JournalRecord {
        JournalRecord {
            seq,
            unix_ms: 1_000 * seq,
            event,
        }
    }

    fn cluster(seq: u64, id: &str, state: ClusterState) -> JournalRecord {
        record(
            seq,
            JournalEvent::Cluster {
                cluster: id.into(),
                state,
                reason: format!("reason {seq}"),
            },
        )
    }

    fn start(seq: u64) -> JournalRecord {
        record(
            seq,
            JournalEvent::ProcessStart {
                clean_previous: true,
                software: "test".into(),
            },
        )
    }

    #[test]
    fn amplifier_switches_keep_the_latest_state_and_survive_a_restart() {
        let mut w = WatchedClusters::default();
        let switch = |seq, output: &str, on| {
            record(
                seq,
                JournalEvent::Amplifier {
                    output: output.into(),
                    on,
                    reason: "lead".into(),
                },
            )
        };
        assert!(w.apply(1, &switch(1, "box", true)));
        assert!(w.apply(1, &switch(2, "box", false)));
        assert!(!w.amplifiers()["box"].on);
        // An old batch uploaded again does not take the state back.
        assert!(w.apply(1, &switch(1, "box", true)));
        assert!(!w.amplifiers()["box"].on);
        assert!(w.apply(1, &switch(3, "box", true)));
        let back = WatchedClusters::from_bytes(&w.to_bytes()).expect("reads back");
        assert_eq!(back, w);
        assert_eq!(back.amplifiers()["box"].unix_ms, 3_000);
        // A snapshot saved before amplifiers were journaled still reads.
        let old = br#"{"last":[1,2],"clusters":[]}"#;
        assert!(WatchedClusters::from_bytes(old)
            .expect("old form")
            .amplifiers()
            .is_empty());
        assert!(w.apply(1, &start(4)));
        assert!(w.amplifiers().is_empty());
    }

    fn states(w: &WatchedClusters) -> Vec<(&str, ClusterState, u64)> {
        w.clusters()
            .iter()
            .map(|(id, s)| (id.as_str(), s.state, s.unix_ms))
            .collect()
    }

    #[test]
    fn the_newest_record_wins_and_a_restart_forgets_the_previous_run() {
        let mut w = WatchedClusters::default();
        for r in [
            start(1),
            cluster(2, "c01", ClusterState::Up),
            cluster(3, "c02", ClusterState::Up),
            cluster(4, "c01", ClusterState::Down),
        ] {
            assert!(w.apply(7, &r));
        }
        assert_eq!(
            states(&w),
            [
                ("c01", ClusterState::Down, 4_000),
                ("c02", ClusterState::Up, 3_000)
            ]
        );
        // The same records again (the acknowledgement was lost): nothing goes back.
        w.apply(7, &cluster(2, "c01", ClusterState::Up));
        assert_eq!(states(&w)[0], ("c01", ClusterState::Down, 4_000));
        w.apply(7, &start(5));
        assert!(w.clusters().is_empty());
        w.apply(7, &cluster(6, "c02", ClusterState::Down));
        assert_eq!(states(&w), [("c02", ClusterState::Down, 6_000)]);
        // A reinstalled agent's new journal counts from 1 again.
        w.apply(3, &start(1));
        w.apply(3, &cluster(2, "c03", ClusterState::Up));
        assert_eq!(states(&w), [("c03", ClusterState::Up, 2_000)]);
    }

    #[test]
    fn the_stored_form_reads_back_to_the_same_states() {
        let records = vec![
            cluster(1, "c05", ClusterState::Down),
            start(2),
            cluster(3, "c01", ClusterState::Up),
            cluster(4, "c02", ClusterState::Up),
            record(5, JournalEvent::ProcessStop),
            cluster(6, "c01", ClusterState::Down),
        ];
        let mut applied = WatchedClusters::default();
        for r in &records {
            applied.apply(9, r);
        }
        let read = WatchedClusters::from_bytes(&applied.to_bytes()).expect("reads back");
        assert_eq!(read, applied);
        // The same records again change nothing: the last one applied is kept too.
        let mut read = read;
        read.apply(9, &cluster(6, "c01", ClusterState::Up));
        assert_eq!(read, applied);
        assert_eq!(WatchedClusters::from_bytes(b"not json"), None);
    }

    #[test]
    fn an_agent_cannot_grow_the_map_without_end() {
        let mut w = WatchedClusters::default();
        for n in 0..MAX_WATCHED_CLUSTERS as u64 {
            assert!(w.apply(1, &cluster(n + 1, &format!("x{n}"), ClusterState::Up)));
        }
        let next = MAX_WATCHED_CLUSTERS as u64 + 1;
        assert!(!w.apply(1, &cluster(next, "one-more", ClusterState::Up)));
        // A known one still changes.
        assert!(w.apply(1, &cluster(next + 1, "x0", ClusterState::Down)));
        assert_eq!(w.clusters().len(), MAX_WATCHED_CLUSTERS);
        assert_eq!(w.clusters()["x0"].state, ClusterState::Down);
    }

    #[test]
    fn configured_clusters_first_then_the_ones_the_district_lacks() {
        let station = Station {
            id: "binh-trung".into(),
            name: "Bình Trung".into(),
            kind: StationKind::Wired,
            villages: 1,
            clusters: 3,
            speakers: 3,
        };
        let mut w = WatchedClusters::default();
        w.apply(1, &cluster(1, "c99", ClusterState::Up));
        w.apply(1, &cluster(2, "c02", ClusterState::Down));
        let views = station_clusters(&station, Some(w.clusters()));
        let summary: Vec<(&str, ClusterHealth, Option<u64>, bool)> = views
            .iter()
            .map(|v| (v.id.as_str(), v.state, v.since, v.configured))
            .collect();
        assert_eq!(
            summary,
            [
                ("binh-trung/c01", ClusterHealth::FollowsStation, None, true),
                ("binh-trung/c02", ClusterHealth::Down, Some(2_000), true),
                ("binh-trung/c03", ClusterHealth::FollowsStation, None, true),
                ("binh-trung/c99", ClusterHealth::Up, Some(1_000), false),
            ]
        );
        assert_eq!(views[1].reason, "reason 2");
        let json = serde_json::to_value(&views[0]).unwrap();
        assert_eq!(json["state"], "follows_station");
        assert_eq!(json["since"], serde_json::Value::Null);
        assert_eq!(
            station_clusters(&station, None)
                .iter()
                .filter(|v| v.state == ClusterHealth::FollowsStation)
                .count(),
            3
        );
    }
}
