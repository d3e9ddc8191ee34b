//! Each station's box health per month, for the station report: the worst temperature and the
//! time over the `[health]` threshold. One small record per station and month, updated in
//! place from the agents' `BoxHealth` reports, so it survives a restart and does not grow with
//! every heartbeat.
//!
//! Time over the threshold is counted between consecutive reports: the gap after a report
//! over the threshold counts, up to [`MonthHealth::update`]'s `max_gap` (the server's idle
//! timeout: an agent silent for longer is not evidence of a hot box). The month is the district's calendar month of the report.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::records::store::StoreError;

/// Tree of the aggregates: `station \0 YYYY-MM` → [`MonthHealth`] as JSON.
const TREE: &str = "box-health-months";

/// One station's month.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MonthHealth {
    /// The hottest report, m°C; none while no report knew the temperature.
    pub worst_temperature_mc: Option<i32>,
    /// Time over the threshold, ms.
    pub over_ms: u64,
}

/// The station's previous report, kept in memory: where the next interval starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LastReport {
    pub unix_ms: u64,
    pub over: bool,
}

impl MonthHealth {
    /// Adds the report at `unix_ms` (temperature `temperature_mc`, `over` the threshold),
    /// given the station's previous report. Sans-IO.
    pub fn update(
        &mut self,
        last: Option<LastReport>,
        unix_ms: u64,
        temperature_mc: Option<i32>,
        max_gap_ms: u64,
    ) {
        if let Some(t) = temperature_mc {
            self.worst_temperature_mc = Some(self.worst_temperature_mc.map_or(t, |w| w.max(t)));
        }
        if let Some(last) = last.filter(|l| l.over) {
            self.over_ms += unix_ms.saturating_sub(last.unix_ms).min(max_gap_ms);
        }
    }

    /// Hours over the threshold.
    pub fn hours_over(&self) -> f64 {
        self.over_ms as f64 / 3_600_000.0
    }
}

/// The aggregates in the store.
#[derive(Debug, Clone)]
pub struct BoxHealthMonths {
    tree: sled::Tree,
    path: PathBuf,
}

fn key(station: &str, month: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(station.len() + 1 + month.len());
    k.extend_from_slice(station.as_bytes());
    k.push(0);
    k.extend_from_slice(month.as_bytes());
    k
}

impl BoxHealthMonths {
    pub(crate) fn open(db: &sled::Db, path: PathBuf) -> Result<Self, StoreError> {
        let tree = db.open_tree(TREE).map_err(|e| StoreError::Db {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        Ok(BoxHealthMonths { tree, path })
    }

    fn db_error(&self, e: impl std::fmt::Display) -> StoreError {
        StoreError::Db {
            path: self.path.clone(),
            reason: e.to_string(),
        }
    }

    /// Applies `change` to `station`'s `month` (`YYYY-MM`) atomically. Not flushed: a report
    /// lost in a power cut is a few seconds of the month.
    pub fn update(
        &self,
        station: &str,
        month: &str,
        change: impl Fn(&mut MonthHealth),
    ) -> Result<MonthHealth, StoreError> {
        let mut result = MonthHealth::default();
        self.tree
            .update_and_fetch(key(station, month), |old| {
                let mut m = old
                    .and_then(|b| serde_json::from_slice::<MonthHealth>(b).ok())
                    .unwrap_or_default();
                change(&mut m);
                result = m;
                serde_json::to_vec(&m).ok()
            })
            .map_err(|e| self.db_error(e))?;
        Ok(result)
    }

    /// `station`'s month, if any report was kept for it.
    pub fn get(&self, station: &str, month: &str) -> Result<Option<MonthHealth>, StoreError> {
        let value = self
            .tree
            .get(key(station, month))
            .map_err(|e| self.db_error(e))?;
        Ok(value.and_then(|b| serde_json::from_slice(&b).ok()))
    }

    /// Every station's months from `from` to `to` (`YYYY-MM`, both included), in key order.
    pub fn range(
        &self,
        from: &str,
        to: &str,
    ) -> Result<Vec<(String, String, MonthHealth)>, StoreError> {
        let mut out = Vec::new();
        for item in self.tree.iter() {
            let (k, v) = item.map_err(|e| self.db_error(e))?;
            let Some(split) = k.iter().position(|b| *b == 0) else {
                continue;
            };
            let station = String::from_utf8_lossy(&k[..split]).into_owned();
            let month = String::from_utf8_lossy(&k[split + 1..]).into_owned();
            if month.as_str() < from || month.as_str() > to {
                continue;
            }
            if let Ok(m) = serde_json::from_slice(&v) {
                out.push((station, month, m));
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_over_is_the_gaps_after_hot_reports_capped() {
        let mut m = MonthHealth::default();
        let gap = 15_000;
        m.update(None, 0, Some(60_000), gap);
        // The box turns hot at 5 s: the time before does not count.
        m.update(
            Some(LastReport {
                unix_ms: 0,
                over: false,
            }),
            5_000,
            Some(81_000),
            gap,
        );
        m.update(
            Some(LastReport {
                unix_ms: 5_000,
                over: true,
            }),
            10_000,
            Some(82_000),
            gap,
        );
        assert_eq!(m.over_ms, 5_000);
        // An agent silent for an hour after a hot report: only the cap counts.
        m.update(
            Some(LastReport {
                unix_ms: 10_000,
                over: true,
            }),
            3_610_000,
            None,
            gap,
        );
        assert_eq!(m.over_ms, 20_000);
        assert_eq!(m.worst_temperature_mc, Some(82_000));
        // An unknown temperature never lowers the worst.
        m.update(None, 3_620_000, None, gap);
        assert_eq!(m.worst_temperature_mc, Some(82_000));
    }

    #[test]
    fn months_are_kept_per_station_and_survive_a_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let db = sled::open(dir.path()).expect("open");
            let months = BoxHealthMonths::open(&db, dir.path().into()).expect("tree");
            for t in [70_000, 85_000, 80_000] {
                months
                    .update("binh-trung", "2026-12", |m| {
                        m.update(
                            Some(LastReport {
                                unix_ms: 0,
                                over: true,
                            }),
                            1_000,
                            Some(t),
                            5_000,
                        )
                    })
                    .expect("update");
            }
            months
                .update("binh-chau", "2026-11", |m| {
                    m.update(None, 0, Some(50_000), 5_000)
                })
                .expect("update");
            db.flush().expect("flush");
        }
        let db = sled::open(dir.path()).expect("reopen");
        let months = BoxHealthMonths::open(&db, dir.path().into()).expect("tree");
        assert_eq!(
            months.get("binh-trung", "2026-12").expect("get"),
            Some(MonthHealth {
                worst_temperature_mc: Some(85_000),
                over_ms: 3_000
            })
        );
        let december = months.range("2026-12", "2026-12").expect("range");
        assert_eq!(december.len(), 1);
        assert_eq!(december[0].0, "binh-trung");
    }
}
