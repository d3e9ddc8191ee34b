//! Writing a report: an aligned table for a terminal, CSV for Excel, or JSON for programs.
//!
//! Table and CSV have the same shape: a few title lines, then one section per figure, each
//! with one row per station (its Vietnamese name and id), one column per period plus the
//! whole range, and a district row. The first section, availability, is the five-year review's
//! table. "—" marks a period without data; titles are Vietnamese, then English.
//!
//! CSV: UTF-8 with a byte order mark (Excel then reads the diacritics right), comma-separated,
//! `.` as the decimal point, CRLF line ends, RFC 4180 quoting; a cell that would start with
//! `=`, `+`, `-` or `@` (a programme name typed by an operator) gets a leading `'` so that Excel
//! does not run it as a formula.

use radio_proto::ProgrammeLevel;
use std::fmt::Write as _;

use super::{
    ClusterUptime, Format, PlayFigures, PlaysReport, PlaysRow, ReportError, ReportHeader,
    UptimeFigures, UptimeReport, UptimeRow,
};

/// The byte order mark that starts a CSV.
pub const BOM: char = '\u{FEFF}';

/// A period without data.
pub const NO_DATA: &str = "—";

/// The uptime report in `format`.
pub fn uptime(report: &UptimeReport, format: Format) -> Result<String, ReportError> {
    match format {
        Format::Json => json(report),
        Format::Table => Ok(table(&uptime_sheet(report))),
        Format::Csv => Ok(csv(&uptime_sheet(report))),
    }
}

/// The plays report in `format`.
pub fn plays(report: &PlaysReport, format: Format) -> Result<String, ReportError> {
    match format {
        Format::Json => json(report),
        Format::Table => Ok(table(&plays_sheet(report))),
        Format::Csv => Ok(csv(&plays_sheet(report))),
    }
}

fn json<T: serde::Serialize>(report: &T) -> Result<String, ReportError> {
    let mut text = serde_json::to_string(report).map_err(|e| ReportError::Json(e.to_string()))?;
    text.push('\n');
    Ok(text)
}

/// One figure for every station.
#[derive(Debug)]
struct Section {
    title: String,
    header: Vec<String>,
    /// Leading columns that are names (left-aligned); the rest are numbers.
    text_columns: usize,
    rows: Vec<Vec<String>>,
}

#[derive(Debug)]
struct Sheet {
    title: Vec<String>,
    sections: Vec<Section>,
}

fn hours(seconds: f64) -> String {
    format!("{:.2}", seconds / 3600.0)
}

type UptimeMetric = (&'static str, fn(&UptimeFigures) -> String);

const UPTIME_METRICS: [UptimeMetric; 14] = [
    ("Tỷ lệ hoạt động (%) / availability (%)", |f| {
        format!("{:.2}", f.availability_pct)
    }),
    ("Số lần gián đoạn / outages", |f| f.outages.to_string()),
    ("Tổng thời gian gián đoạn (giờ) / total outage time (hours)", |f| {
        hours(f.outage_total_s)
    }),
    ("Lần gián đoạn dài nhất (giờ) / longest outage (hours)", |f| {
        hours(f.outage_longest_s)
    }),
    (
        "Thời gian khắc phục trung bình (giờ) / MTTR, mean time to repair (hours; empty: no outage)",
        |f| f.mttr_s.map(hours).unwrap_or_default(),
    ),
    ("Số giờ phát sóng / hours on air", |f| hours(f.on_air_s)),
    ("Số chương trình đã phát / programmes played", |f| {
        f.programmes.to_string()
    }),
    ("Số giây đã phát / seconds aired", |f| format!("{:.2}", f.aired_s)),
    ("Mất kết nối (giờ) / link down (hours)", |f| hours(f.link_down_s)),
    ("Tắt máy hoặc mất điện (giờ) / off: stopped, power cut (hours)", |f| {
        hours(f.off_s)
    }),
    ("Chưa có tin (giờ) / unreported (hours)", |f| {
        hours(f.unreported_s)
    }),
    (
        "Cụm loa mất tín hiệu (giờ) / cluster receiver down (hours; cluster rows)",
        |f| hours(f.cluster_down_s),
    ),
    ("Số giờ có số liệu / hours with data", |f| hours(f.known_s)),
    ("Số giờ bật bộ khuếch đại / amplifier hours (switched on)", |f| {
        hours(f.amplifier_hours * 3600.0)
    }),
];

type PlaysMetric = (&'static str, fn(&PlayFigures) -> String);

const PLAYS_METRICS: [PlaysMetric; 3] = [
    ("Số lần phát / programmes played", |f| {
        f.plays.to_string()
    }),
    ("Số giây đã phát / seconds aired", |f| {
        format!("{:.2}", f.aired_s)
    }),
    (
        "Bị cắt ngang, không rõ thời lượng / cut off by a power cut or crash (length unknown)",
        |f| f.cut_off.to_string(),
    ),
];

const STATION: &str = "Trạm / station";
const ID: &str = "Mã / id";
const PROGRAMME: &str = "Chương trình / programme";
const LEVEL: &str = "Mức / level";
const DISTRICT: &str = "Toàn huyện / district";
const TOTAL: &str = "Cộng / total";
const WHOLE_RANGE: &str = "Cả kỳ / all";

fn title(header: &ReportHeader, what: &str) -> Vec<String> {
    let by = match header.by {
        super::Granularity::Day => "theo ngày / by day",
        super::Granularity::Month => "theo tháng / by month",
        super::Granularity::Year => "theo năm / by year",
    };
    let tz = crate::schedule::load_timezone(&header.timezone).unwrap_or(jiff::tz::TimeZone::UTC);
    let generated = tz
        .to_datetime(header.generated)
        .strftime("%Y-%m-%d %H:%M")
        .to_string();
    vec![
        format!("{} — {what}", header.district),
        format!(
            "{} … {}, {by}, giờ địa phương / local time {}",
            header.from, header.to, header.timezone
        ),
        format!("Lập lúc / made {generated}; {NO_DATA} = chưa có số liệu / no data"),
    ]
}

fn period_header(header: &ReportHeader, leading: &[&str]) -> Vec<String> {
    leading
        .iter()
        .map(|s| (*s).to_owned())
        .chain(header.periods.iter().map(|p| p.label.clone()))
        .chain([WHOLE_RANGE.to_owned()])
        .collect()
}

fn cells<T>(periods: &[Option<T>], all: &Option<T>, f: fn(&T) -> String) -> Vec<String> {
    periods
        .iter()
        .chain([all])
        .map(|cell| cell.as_ref().map_or_else(|| NO_DATA.to_owned(), f))
        .collect()
}

fn uptime_sheet(report: &UptimeReport) -> Sheet {
    let header = &report.header;
    let row = |leading: [&str; 2], row: &UptimeRow, f| {
        let mut out: Vec<String> = leading.iter().map(|s| (*s).to_owned()).collect();
        out.extend(cells(&row.periods, &row.all, f));
        out
    };
    let sections = UPTIME_METRICS
        .iter()
        .map(|(name, f)| {
            let mut rows: Vec<Vec<String>> = Vec::new();
            for s in &report.stations {
                rows.push(row([&s.name, &s.id], &s.row, *f));
                for c in &s.clusters {
                    rows.push(row([&cluster_label(&s.name, c), &c.id], &c.row, *f));
                }
            }
            rows.push(row([DISTRICT, ""], &report.district_total, *f));
            Section {
                title: (*name).to_owned(),
                header: period_header(header, &[STATION, ID]),
                text_columns: 2,
                rows,
            }
        })
        .collect();
    let mut sheet = Sheet {
        title: title(
            header,
            "Hoạt động của các đài truyền thanh cơ sở / station uptime",
        ),
        sections,
    };
    if !report.box_health.is_empty() {
        sheet.sections.push(box_health_section(report));
    }
    sheet
}

/// A row per station and month: the worst temperature and the hours over the threshold.
fn box_health_section(report: &UptimeReport) -> Section {
    let rows = report
        .box_health
        .iter()
        .flat_map(|s| {
            s.months.iter().map(|m| {
                vec![
                    s.name.clone(),
                    s.id.clone(),
                    m.month.clone(),
                    m.worst_temperature_c
                        .map(|t| format!("{t:.1}"))
                        .unwrap_or_default(),
                    format!("{:.2}", m.hours_over_threshold),
                ]
            })
        })
        .collect();
    Section {
        title: "Tình trạng thiết bị theo tháng / box health by month".to_owned(),
        header: [
            STATION,
            ID,
            "Tháng / month",
            "Nhiệt độ cao nhất (°C) / worst temperature (°C; empty: unknown)",
            "Số giờ quá nhiệt / hours over the temperature threshold",
        ]
        .map(str::to_owned)
        .to_vec(),
        text_columns: 3,
        rows,
    }
}

/// "Bình Trung · cụm c01", saying when the row is the station's own.
fn cluster_label(station: &str, cluster: &ClusterUptime) -> String {
    let short = cluster.id.rsplit('/').next().unwrap_or(&cluster.id);
    let note = match (cluster.watched, cluster.unconfigured) {
        (_, true) => " (không có trong cấu hình / not configured)",
        (true, false) => "",
        (false, false) => " (theo đài / follows the station)",
    };
    format!("{station} · cụm {short}{note}")
}

/// "khẩn cấp / emergency": both languages, like every heading.
fn level_label(level: ProgrammeLevel) -> String {
    format!("{} / {}", level.vietnamese(), level.as_str())
}

fn plays_sheet(report: &PlaysReport) -> Sheet {
    let header = &report.header;
    let row = |leading: [&str; 4], row: &PlaysRow, f| {
        let mut out: Vec<String> = leading.iter().map(|s| (*s).to_owned()).collect();
        out.extend(cells(&row.periods, &row.all, f));
        out
    };
    let sections = PLAYS_METRICS
        .iter()
        .map(|(name, f)| {
            let mut rows = Vec::new();
            for s in &report.stations {
                for p in &s.plays.programmes {
                    let level = level_label(p.level);
                    rows.push(row([&s.name, &s.id, &p.name, &level], &p.row, *f));
                }
                rows.push(row([&s.name, &s.id, TOTAL, ""], &s.plays.total, *f));
            }
            for p in &report.district_total.programmes {
                let level = level_label(p.level);
                rows.push(row([DISTRICT, "", &p.name, &level], &p.row, *f));
            }
            rows.push(row(
                [DISTRICT, "", TOTAL, ""],
                &report.district_total.total,
                *f,
            ));
            Section {
                title: (*name).to_owned(),
                header: period_header(header, &[STATION, ID, PROGRAMME, LEVEL]),
                text_columns: 4,
                rows,
            }
        })
        .collect();
    Sheet {
        title: title(header, "Chương trình đã phát / programmes played"),
        sections,
    }
}

/// Aligned columns, padded by characters (Vietnamese letters are several bytes); names to
/// the left, numbers to the right.
fn table(sheet: &Sheet) -> String {
    let mut out = String::new();
    for line in &sheet.title {
        out.push_str(line);
        out.push('\n');
    }
    for section in &sheet.sections {
        let _ = writeln!(out, "\n{}", section.title);
        let mut widths: Vec<usize> = section.header.iter().map(|h| h.chars().count()).collect();
        for row in &section.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        for row in std::iter::once(&section.header).chain(&section.rows) {
            let mut line = String::new();
            for (i, (cell, width)) in row.iter().zip(&widths).enumerate() {
                if i > 0 {
                    line.push_str("  ");
                }
                let pad = width.saturating_sub(cell.chars().count());
                if i < section.text_columns {
                    line.push_str(cell);
                    line.extend(std::iter::repeat_n(' ', pad));
                } else {
                    line.extend(std::iter::repeat_n(' ', pad));
                    line.push_str(cell);
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
    }
    out
}

/// One CSV field, quoted when needed, guarded against formula injection.
fn csv_field(text: &str) -> String {
    let guarded = if text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{text}")
    } else {
        text.to_owned()
    };
    if guarded.contains([',', '"', '\n', '\r'])
        || guarded.starts_with(' ')
        || guarded.ends_with(' ')
    {
        format!("\"{}\"", guarded.replace('"', "\"\""))
    } else {
        guarded
    }
}

/// One CSV row of guarded fields, CRLF-terminated (also the audit listing's CSV).
pub(crate) fn csv_line(out: &mut String, cells: &[String]) {
    let fields: Vec<String> = cells.iter().map(|c| csv_field(c)).collect();
    out.push_str(&fields.join(","));
    out.push_str("\r\n");
}

fn csv(sheet: &Sheet) -> String {
    let mut out = String::from(BOM);
    for line in &sheet.title {
        csv_line(&mut out, std::slice::from_ref(line));
    }
    for section in &sheet.sections {
        out.push_str("\r\n");
        csv_line(&mut out, std::slice::from_ref(&section.title));
        csv_line(&mut out, &section.header);
        for row in &section.rows {
            csv_line(&mut out, row);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_and_guarded() {
        assert_eq!(csv_field("Bình Trung"), "Bình Trung");
        assert_eq!(csv_field("a, b"), "\"a, b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(csv_field("-1"), "'-1");
        assert_eq!(csv_field(NO_DATA), NO_DATA);
        assert_eq!(csv_field(" x"), "\" x\"");
    }

    #[test]
    fn tables_align_by_characters() {
        let sheet = Sheet {
            title: vec!["t".into()],
            sections: vec![Section {
                title: "s".into(),
                header: vec!["Trạm".into(), "2021".into()],
                text_columns: 1,
                rows: vec![
                    vec!["Thị trấn Châu Ổ".into(), "99.50".into()],
                    vec!["Bình Trung".into(), NO_DATA.into()],
                ],
            }],
        };
        assert_eq!(
            table(&sheet),
            "t\n\ns\nTrạm              2021\nThị trấn Châu Ổ  99.50\nBình Trung           —\n"
        );
        assert_eq!(
            csv(&sheet),
            "\u{FEFF}t\r\n\r\ns\r\nTrạm,2021\r\nThị trấn Châu Ổ,99.50\r\nBình Trung,—\r\n"
        );
    }
}
