//! The box health part of the station report: per station and month of the range, the worst
//! temperature its agent reported and the hours it spent over the `[health]` threshold, from
//! the months' aggregates (`records/box_health.rs`).

use std::collections::BTreeMap;

use jiff::civil::Date;
use radio_config::District;
use serde::Serialize;

use crate::records::box_health::MonthHealth;

/// One station's months with box health reports.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StationBoxHealth {
    pub id: String,
    pub name: String,
    pub months: Vec<MonthBoxHealth>,
}

/// One month of a station's box health.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MonthBoxHealth {
    /// `YYYY-MM`, the district's calendar month.
    pub month: String,
    /// °C; null when no report knew the temperature (a box without thermal zones).
    pub worst_temperature_c: Option<f64>,
    /// Hours over `max_temperature_c`, counted between the reports.
    pub hours_over_threshold: f64,
}

/// `YYYY-MM` of a date.
pub fn month_of(date: Date) -> String {
    format!("{:04}-{:02}", date.year(), date.month())
}

/// The stations (in the district's order) with months from `from` to `to` among `months`
/// (station, `YYYY-MM`, aggregate); stations without any are left out.
pub fn box_health(
    district: &District,
    months: &[(String, String, MonthHealth)],
    from: Date,
    to: Date,
) -> Vec<StationBoxHealth> {
    let (first, last) = (month_of(from), month_of(to));
    let mut by_station: BTreeMap<&str, Vec<MonthBoxHealth>> = BTreeMap::new();
    for (station, month, m) in months {
        if month.as_str() < first.as_str() || month.as_str() > last.as_str() {
            continue;
        }
        by_station
            .entry(station.as_str())
            .or_default()
            .push(MonthBoxHealth {
                month: month.clone(),
                worst_temperature_c: m.worst_temperature_mc.map(|t| f64::from(t) / 1000.0),
                hours_over_threshold: m.hours_over(),
            });
    }
    district
        .stations
        .iter()
        .filter_map(|s| {
            let mut months = by_station.remove(s.id.as_str())?;
            months.sort_by(|a, b| a.month.cmp(&b.month));
            Some(StationBoxHealth {
                id: s.id.clone(),
                name: s.name.clone(),
                months,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_in_range_in_the_districts_order() {
        let district = District::binh_son();
        let first = district.stations[0].id.clone();
        let second = district.stations[1].id.clone();
        let m = |t: i32, over_ms: u64| MonthHealth {
            worst_temperature_mc: Some(t),
            over_ms,
        };
        let months = vec![
            (second.clone(), "2026-12".to_owned(), m(70_000, 0)),
            (first.clone(), "2026-12".to_owned(), m(81_500, 5_400_000)),
            (first.clone(), "2026-10".to_owned(), m(90_000, 1)),
            ("not-a-station".to_owned(), "2026-12".to_owned(), m(1, 1)),
        ];
        let from = Date::constant(2026, 11, 1);
        let to = Date::constant(2026, 12, 31);
        let got = box_health(&district, &months, from, to);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].id, first);
        assert_eq!(
            got[0].months,
            vec![MonthBoxHealth {
                month: "2026-12".into(),
                worst_temperature_c: Some(81.5),
                hours_over_threshold: 1.5
            }]
        );
        assert_eq!(got[1].id, second);
    }
}
