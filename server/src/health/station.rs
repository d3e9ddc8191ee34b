//! One station's box health as the server holds it: the last report, the warnings on, and
//! where the next interval of the month's aggregate starts.

use std::collections::BTreeMap;

use radio_proto::BoxHealth;
use serde::Serialize;

use crate::health::warnings::{HealthWarnings, WarningKind};

/// Kept in the station's agent record.
#[derive(Debug, Clone, Default)]
pub struct StationHealth {
    pub last: Option<BoxHealth>,
    pub warnings: HealthWarnings,
    /// The previous report's server time (ms) and whether it was over the threshold.
    pub previous: Option<(u64, bool)>,
}

impl StationHealth {
    /// What a snapshot shows; none before the first report.
    pub fn snapshot(&self) -> Option<HealthSnapshot> {
        self.last.as_ref().map(|report| HealthSnapshot {
            report: report.clone(),
            warnings: self.warnings.active().clone(),
        })
    }
}

/// The last report and the warnings it left on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthSnapshot {
    pub report: BoxHealth,
    pub warnings: BTreeMap<WarningKind, String>,
}

/// The dashboard's view of a station's health (`GET /api/v1/stations`).
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct HealthView {
    /// One compact line, Vietnamese: «Nhiệt độ 81 °C — quá nóng · Đĩa trống 42 % · …».
    pub line_vi: String,
    /// The same in English.
    pub line_en: String,
    /// The warnings on, by kind (`hot`, `disk-full`, `output-failing`), with their detail.
    pub warnings: BTreeMap<WarningKind, String>,
    pub temperature_c: Option<f64>,
    pub disk_free_percent: Option<f64>,
    pub memory_available_percent: Option<f64>,
    pub load1: Option<f64>,
    pub uptime_s: Option<u64>,
    pub since_clock_sync_s: Option<u64>,
}

impl HealthSnapshot {
    pub fn view(&self) -> HealthView {
        let r = &self.report;
        let warn = |kind: WarningKind, vi: bool| -> String {
            if self.warnings.contains_key(&kind) {
                if vi {
                    format!(" — {}", kind.vietnamese())
                } else {
                    format!(" — {}", english(kind))
                }
            } else {
                String::new()
            }
        };
        let line = |vi: bool| {
            let mut parts = Vec::new();
            let unknown = if vi { "không rõ" } else { "unknown" };
            let t = r
                .temperature_c()
                .map_or(unknown.to_owned(), |t| format!("{t:.0} °C"));
            parts.push(format!(
                "{} {t}{}",
                if vi { "Nhiệt độ" } else { "Temperature" },
                warn(WarningKind::Hot, vi)
            ));
            if let Some(d) = r.disk_free_percent() {
                parts.push(format!(
                    "{} {d:.0} %{}",
                    if vi { "Đĩa trống" } else { "Disk free" },
                    warn(WarningKind::DiskFull, vi)
                ));
            }
            if let Some(m) = r.memory_available_percent() {
                parts.push(format!(
                    "{} {m:.0} %",
                    if vi { "RAM trống" } else { "Memory free" }
                ));
            }
            if let Some(l) = r.load1() {
                parts.push(format!("{} {l:.2}", if vi { "Tải" } else { "Load" }));
            }
            if self.warnings.contains_key(&WarningKind::OutputFailing) {
                parts.push(if vi {
                    "Đầu ra hỏng".to_owned()
                } else {
                    "Output failing".to_owned()
                });
            }
            parts.join(" · ")
        };
        HealthView {
            line_vi: line(true),
            line_en: line(false),
            warnings: self.warnings.clone(),
            temperature_c: r.temperature_c(),
            disk_free_percent: r.disk_free_percent(),
            memory_available_percent: r.memory_available_percent(),
            load1: r.load1(),
            uptime_s: r.uptime_s,
            since_clock_sync_s: r.since_clock_sync_s,
        }
    }
}

fn english(kind: WarningKind) -> &'static str {
    match kind {
        WarningKind::Hot => "too hot",
        WarningKind::DiskFull => "disk nearly full",
        WarningKind::OutputFailing => "output failing",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_is_vietnamese_first_and_says_unknown() {
        let mut warnings = BTreeMap::new();
        warnings.insert(WarningKind::Hot, "temperature 81.0 °C > 75 °C".to_owned());
        let hot = HealthSnapshot {
            report: BoxHealth {
                temperature_mc: Some(81_000),
                disk: Some((42, 100)),
                load_centi: Some([150, 0, 0]),
                ..BoxHealth::default()
            },
            warnings,
        };
        let view = hot.view();
        assert_eq!(
            view.line_vi,
            "Nhiệt độ 81 °C — quá nóng · Đĩa trống 42 % · Tải 1.50"
        );
        assert_eq!(
            view.line_en,
            "Temperature 81 °C — too hot · Disk free 42 % · Load 1.50"
        );
        let vm = HealthSnapshot {
            report: BoxHealth::default(),
            warnings: BTreeMap::new(),
        };
        assert_eq!(vm.view().line_vi, "Nhiệt độ không rõ");
        assert_eq!(vm.view().temperature_c, None);
    }
}
