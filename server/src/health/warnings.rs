//! Which health warnings a station has, from its agent's `BoxHealth` reports and the
//! `[health]` thresholds: sans-IO, so each report yields the warnings that *start* or *clear*
//! with it — a station that stays hot is one warning, not one per heartbeat.

use std::collections::BTreeMap;

use radio_config::HealthSettings;
use radio_proto::{BoxHealth, SinkHealth};
use serde::{Deserialize, Serialize};

/// What can be wrong with a station's box.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WarningKind {
    /// Hotter than `max_temperature_c`.
    Hot,
    /// Less free disk than `min_free_disk_percent`.
    DiskFull,
    /// An output fails or a watched cluster is down.
    OutputFailing,
}

impl WarningKind {
    pub const ALL: [WarningKind; 3] = [
        WarningKind::Hot,
        WarningKind::DiskFull,
        WarningKind::OutputFailing,
    ];

    /// The `kind` label of `/metrics` and the audit record's id suffix.
    pub fn as_str(self) -> &'static str {
        match self {
            WarningKind::Hot => "hot",
            WarningKind::DiskFull => "disk-full",
            WarningKind::OutputFailing => "output-failing",
        }
    }

    /// The dashboard's words.
    pub fn vietnamese(self) -> &'static str {
        match self {
            WarningKind::Hot => "quá nóng",
            WarningKind::DiskFull => "đĩa sắp đầy",
            WarningKind::OutputFailing => "đầu ra hỏng",
        }
    }
}

/// A warning that started or cleared with a report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    pub kind: WarningKind,
    /// True when it starts, false when it clears.
    pub started: bool,
    /// The figure against its threshold, e.g. `temperature 81.0 °C > 75 °C`.
    pub detail: String,
}

/// One station's active warnings, each with what raised it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HealthWarnings {
    active: BTreeMap<WarningKind, String>,
}

impl HealthWarnings {
    /// The warnings on now, with their detail.
    pub fn active(&self) -> &BTreeMap<WarningKind, String> {
        &self.active
    }

    /// Takes a report in; returns the warnings that start or clear with it. A figure the
    /// report does not know (no thermal zone) neither raises nor clears its warning.
    pub fn observe(&mut self, health: &BoxHealth, rules: &HealthSettings) -> Vec<Transition> {
        let mut out = Vec::new();
        for kind in WarningKind::ALL {
            let Some((bad, detail)) = judge(kind, health, rules) else {
                continue;
            };
            match (bad, self.active.contains_key(&kind)) {
                (true, false) => {
                    self.active.insert(kind, detail.clone());
                    out.push(Transition {
                        kind,
                        started: true,
                        detail,
                    });
                }
                (true, true) => {
                    // Still on: the detail follows the latest figure, silently.
                    self.active.insert(kind, detail);
                }
                (false, true) => {
                    self.active.remove(&kind);
                    out.push(Transition {
                        kind,
                        started: false,
                        detail,
                    });
                }
                (false, false) => {}
            }
        }
        out
    }
}

/// Whether `kind` is on for `health`, and the figure that says so; `None` when unknown.
fn judge(kind: WarningKind, h: &BoxHealth, rules: &HealthSettings) -> Option<(bool, String)> {
    match kind {
        WarningKind::Hot => {
            let t = h.temperature_c()?;
            let max = f64::from(rules.max_temperature_c);
            let bad = t > max;
            Some((
                bad,
                format!(
                    "temperature {t:.1} °C {} {max} °C",
                    if bad { ">" } else { "≤" }
                ),
            ))
        }
        WarningKind::DiskFull => {
            let free = h.disk_free_percent()?;
            let min = f64::from(rules.min_free_disk_percent);
            let bad = free < min;
            Some((
                bad,
                format!(
                    "free disk {free:.1} % {} {min} %",
                    if bad { "<" } else { "≥" }
                ),
            ))
        }
        WarningKind::OutputFailing => {
            if !rules.warn_failed_outputs {
                return Some((false, "output warnings are off".to_owned()));
            }
            let failing: Vec<String> = h
                .outputs
                .iter()
                .filter(|o| o.state == SinkHealth::Failed)
                .map(|o| format!("{} failed", o.name))
                .chain(
                    h.clusters
                        .iter()
                        .filter(|c| !c.up)
                        .map(|c| format!("cluster {} down", c.id)),
                )
                .collect();
            Some(if failing.is_empty() {
                (false, "every output works".to_owned())
            } else {
                (true, failing.join(", "))
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use radio_proto::{ClusterHealth, OutputHealth};

    fn report(temperature_c: Option<i32>, free_percent: u64) -> BoxHealth {
        BoxHealth {
            temperature_mc: temperature_c.map(|c| c * 1000),
            disk: Some((free_percent, 100)),
            ..BoxHealth::default()
        }
    }

    fn kinds(t: &[Transition]) -> Vec<(WarningKind, bool)> {
        t.iter().map(|t| (t.kind, t.started)).collect()
    }

    #[test]
    fn a_warning_starts_once_and_clears_once() {
        let rules = HealthSettings::default();
        let mut w = HealthWarnings::default();
        assert!(w.observe(&report(Some(60), 50), &rules).is_empty());
        let on = w.observe(&report(Some(81), 50), &rules);
        assert_eq!(kinds(&on), [(WarningKind::Hot, true)]);
        assert_eq!(on[0].detail, "temperature 81.0 °C > 75 °C");
        // Still hot: nothing new, however many heartbeats.
        for _ in 0..10 {
            assert!(w.observe(&report(Some(82), 50), &rules).is_empty());
        }
        assert_eq!(
            w.active().get(&WarningKind::Hot).map(String::as_str),
            Some("temperature 82.0 °C > 75 °C")
        );
        // Exactly at the threshold is not over it.
        let off = w.observe(&report(Some(75), 50), &rules);
        assert_eq!(kinds(&off), [(WarningKind::Hot, false)]);
        assert!(w.active().is_empty());
    }

    #[test]
    fn unknown_figures_neither_raise_nor_clear() {
        let rules = HealthSettings::default();
        let mut w = HealthWarnings::default();
        // A VM: no thermal zone. Unknown is not 0 °C, and not a warning either.
        assert!(w.observe(&report(None, 50), &rules).is_empty());
        assert_eq!(
            kinds(&w.observe(&report(Some(90), 50), &rules)),
            [(WarningKind::Hot, true)]
        );
        assert!(w.observe(&report(None, 50), &rules).is_empty());
        assert!(w.active().contains_key(&WarningKind::Hot));
    }

    #[test]
    fn disk_and_outputs() {
        let rules = HealthSettings {
            min_free_disk_percent: 10,
            ..HealthSettings::default()
        };
        let mut w = HealthWarnings::default();
        let mut h = report(Some(40), 5);
        h.outputs.push(OutputHealth {
            name: "pipe:aplay".into(),
            state: SinkHealth::Failed,
        });
        h.clusters.push(ClusterHealth {
            id: "c01".into(),
            up: false,
        });
        let on = w.observe(&h, &rules);
        assert_eq!(
            kinds(&on),
            [
                (WarningKind::DiskFull, true),
                (WarningKind::OutputFailing, true)
            ]
        );
        assert_eq!(on[1].detail, "pipe:aplay failed, cluster c01 down");
        let off = w.observe(&report(Some(40), 10), &rules);
        assert_eq!(
            kinds(&off),
            [
                (WarningKind::DiskFull, false),
                (WarningKind::OutputFailing, false)
            ]
        );
        // Turned off, output failures raise nothing.
        let quiet = HealthSettings {
            warn_failed_outputs: false,
            ..rules
        };
        assert!(w
            .observe(&h, &quiet)
            .iter()
            .all(|t| t.kind != WarningKind::OutputFailing));
    }
}
