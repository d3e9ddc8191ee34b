//! The district's commune radio stations: who the server broadcasts to.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use crate::error::ConfigError;
use crate::location::{error_at_path, parse_toml};

/// Embedded so the binaries run with no data files installed.
const BINH_SON_TOML: &str = include_str!("../data/binh-son.toml");

/// Longest station id: ids become directory names and certificate subject names.
const MAX_ID_BYTES: usize = 64;

/// How a commune station reaches its loudspeaker clusters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StationKind {
    /// Cable from the station to the clusters.
    Wired,
    /// FM to receivers at the clusters; loses signal in storms, so its uptime is watched closely.
    Wireless,
}

/// One commune-level radio station ("đài truyền thanh").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Station {
    /// ASCII slug, unique in the district, e.g. `binh-trung`.
    pub id: String,
    /// Vietnamese name with diacritics, e.g. `Bình Trung`.
    pub name: String,
    pub kind: StationKind,
    /// Villages and residential groups served.
    pub villages: u32,
    /// Loudspeaker clusters ("cụm loa").
    pub clusters: u32,
    pub speakers: u32,
}

impl Station {
    /// Cluster ids `"<station>/c01"` … : zero-padded to two digits so they sort in order.
    pub fn cluster_ids(&self) -> Vec<String> {
        (1..=self.clusters)
            .map(|n| format!("{}/c{n:02}", self.id))
            .collect()
    }
}

/// A district: its stations and where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct District {
    pub id: String,
    pub name: String,
    pub province: String,
    /// IANA zone used for schedules, e.g. `Asia/Ho_Chi_Minh`.
    pub timezone: String,
    /// Clusters driven by the district station itself, not counted in any commune.
    pub district_station_clusters: u32,
    pub stations: Vec<Station>,
}

/// The file shape: a `[district]` table and a `[[station]]` array.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DistrictFile {
    district: DistrictHeader,
    station: Vec<Station>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DistrictHeader {
    id: String,
    name: String,
    province: String,
    timezone: String,
    district_station_clusters: u32,
}

impl District {
    /// Bình Sơn district, Quảng Ngãi: 22 stations, embedded in the binary.
    pub fn binh_son() -> District {
        static PARSED: OnceLock<District> = OnceLock::new();
        PARSED
            .get_or_init(|| {
                District::from_toml_str(BINH_SON_TOML, "binh-son.toml")
                    .expect("embedded binh-son.toml is checked by a unit test")
            })
            .clone()
    }

    /// Parses and validates a district file; `source` names it in errors.
    pub fn from_toml_str(text: &str, source: &str) -> Result<District, ConfigError> {
        let file: DistrictFile = parse_toml(text, source)?;
        let DistrictHeader {
            id,
            name,
            province,
            timezone,
            district_station_clusters,
        } = file.district;
        let district = District {
            id,
            name,
            province,
            timezone,
            district_station_clusters,
            stations: file.station,
        };
        district
            .check()
            .map_err(|(path, message)| error_at_path(text, source, &path, message))?;
        Ok(district)
    }

    /// Reads and validates a district file.
    pub fn load(path: &Path) -> Result<District, ConfigError> {
        let source = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::new(&source, format!("cannot read district file: {e}")))?;
        District::from_toml_str(&text, &source)
    }

    pub fn station(&self, id: &str) -> Option<&Station> {
        self.stations.iter().find(|s| s.id == id)
    }

    /// Commune clusters only; the district station's own clusters are separate.
    pub fn total_clusters(&self) -> u32 {
        self.stations.iter().map(|s| s.clusters).sum()
    }

    pub fn total_speakers(&self) -> u32 {
        self.stations.iter().map(|s| s.speakers).sum()
    }

    pub fn total_villages(&self) -> u32 {
        self.stations.iter().map(|s| s.villages).sum()
    }

    /// Validation rules; the error is `(key path, message)` so the caller can find its line.
    fn check(&self) -> Result<(), (String, String)> {
        let field = |name: &str| format!("district.{name}");
        check_slug(&self.id).map_err(|m| (field("id"), m))?;
        for (name, value) in [
            ("name", &self.name),
            ("province", &self.province),
            ("timezone", &self.timezone),
        ] {
            if value.trim().is_empty() {
                return Err((field(name), "must not be empty".to_owned()));
            }
        }
        if self.stations.is_empty() {
            return Err((
                "station".to_owned(),
                "at least one [[station]] is required".to_owned(),
            ));
        }
        // Totals are summed as u32 elsewhere; refuse files whose sums would overflow.
        let mut totals = [0u32; 3];
        let mut first_use: BTreeMap<&str, usize> = BTreeMap::new();
        for (i, station) in self.stations.iter().enumerate() {
            let field = |name: &str| format!("station[{i}].{name}");
            check_slug(&station.id).map_err(|m| (field("id"), m))?;
            if let Some(first) = first_use.insert(&station.id, i) {
                return Err((
                    field("id"),
                    format!(
                        "duplicate station id `{}` (also used by station[{first}])",
                        station.id
                    ),
                ));
            }
            if station.name.trim().is_empty() {
                return Err((field("name"), "must not be empty".to_owned()));
            }
            if station.clusters == 0 {
                return Err((
                    field("clusters"),
                    "a station needs at least 1 loudspeaker cluster".to_owned(),
                ));
            }
            if station.speakers < station.clusters {
                return Err((
                    field("speakers"),
                    format!(
                        "every cluster has at least one speaker, so speakers ({}) must be at \
                         least clusters ({})",
                        station.speakers, station.clusters
                    ),
                ));
            }
            for (total, (name, value)) in totals.iter_mut().zip([
                ("villages", station.villages),
                ("clusters", station.clusters),
                ("speakers", station.speakers),
            ]) {
                *total = total
                    .checked_add(value)
                    .ok_or_else(|| (field(name), "district total overflows".to_owned()))?;
            }
        }
        Ok(())
    }
}

/// Whether `id` is `^[a-z0-9]+(-[a-z0-9]+)*$` and at most 64 bytes: safe in paths, URLs and
/// certificate names. Every id in the system (stations, schedule entries, bulletins) follows it.
pub fn is_slug(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ID_BYTES
        && id.split('-').all(|part| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        })
}

/// The longest id [`is_slug`] accepts, in bytes.
pub const MAX_SLUG_BYTES: usize = MAX_ID_BYTES;

fn check_slug(id: &str) -> Result<(), String> {
    if is_slug(id) {
        Ok(())
    } else {
        Err(format!(
            "`{id}` is not a valid id: use lowercase ASCII letters and digits separated by \
             single hyphens, at most {MAX_ID_BYTES} bytes (e.g. `binh-trung`)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<District, ConfigError> {
        District::from_toml_str(text, "d.toml")
    }

    const HEADER: &str = "\
[district]
id = \"binh-son\"
name = \"Huyện Bình Sơn\"
province = \"Quảng Ngãi\"
timezone = \"Asia/Ho_Chi_Minh\"
district_station_clusters = 9
";

    fn station(id: &str, clusters: u32, speakers: u32) -> String {
        format!(
            "\n[[station]]\nid = \"{id}\"\nname = \"Bình {id}\"\nkind = \"wired\"\n\
             villages = 1\nclusters = {clusters}\nspeakers = {speakers}\n"
        )
    }

    #[test]
    fn embedded_default_validates() {
        let d = District::from_toml_str(BINH_SON_TOML, "binh-son.toml")
            .expect("embedded district file must validate");
        assert_eq!(d, District::binh_son());
    }

    #[test]
    fn embedded_default_matches_the_field_report() {
        let d = District::binh_son();
        assert_eq!(d.id, "binh-son");
        assert_eq!(d.name, "Huyện Bình Sơn");
        assert_eq!(d.province, "Quảng Ngãi");
        assert_eq!(d.timezone, "Asia/Ho_Chi_Minh");
        assert_eq!(d.district_station_clusters, 9);
        assert_eq!(d.stations.len(), 22);
        let wired = d
            .stations
            .iter()
            .filter(|s| s.kind == StationKind::Wired)
            .count();
        let wireless = d
            .stations
            .iter()
            .filter(|s| s.kind == StationKind::Wireless)
            .count();
        assert_eq!((wired, wireless), (8, 14));
        assert_eq!(d.total_clusters(), 554);
        assert_eq!(d.total_speakers(), 1_107);
        assert_eq!(d.total_villages(), 120);
    }

    #[test]
    fn names_keep_their_diacritics() {
        let d = District::binh_son();
        let thanh = d
            .stations
            .iter()
            .find(|s| s.name == "Bình Thanh")
            .expect("Bình Thanh present");
        let thanh_tone = d
            .stations
            .iter()
            .find(|s| s.name == "Bình Thạnh")
            .expect("Bình Thạnh present");
        assert_ne!(thanh.id, thanh_tone.id);
        assert_eq!(
            d.station("thi-tran-chau-o").map(|s| s.name.as_str()),
            Some("Thị trấn Châu Ổ")
        );
        assert!(d.station("nowhere").is_none());
    }

    #[test]
    fn cluster_ids_are_zero_padded() {
        let d = District::binh_son();
        let ids = d.station("binh-trung").expect("present").cluster_ids();
        assert_eq!(ids.len(), 24);
        assert_eq!(ids[0], "binh-trung/c01");
        assert_eq!(ids[23], "binh-trung/c24");
        let big = Station {
            id: "x".into(),
            name: "X".into(),
            kind: StationKind::Wired,
            villages: 1,
            clusters: 100,
            speakers: 100,
        };
        assert_eq!(big.cluster_ids()[99], "x/c100");
    }

    #[test]
    fn kind_round_trips_in_lowercase() {
        let text = toml::to_string(&Station {
            id: "a".into(),
            name: "Á".into(),
            kind: StationKind::Wireless,
            villages: 1,
            clusters: 1,
            speakers: 1,
        })
        .expect("serialises");
        assert!(text.contains("kind = \"wireless\""), "{text}");
    }

    #[test]
    fn minimal_file_parses() {
        let d = parse(&format!("{HEADER}{}", station("a", 2, 3))).expect("valid");
        assert_eq!(d.stations.len(), 1);
        assert_eq!(d.total_speakers(), 3);
    }

    #[test]
    fn unknown_field_names_line_and_key() {
        let text = format!("{HEADER}{}colour = \"red\"\n", station("a", 1, 1));
        let err = parse(&text).expect_err("unknown field");
        assert_eq!(err.key.as_deref(), Some("station[0].colour"));
        assert_eq!(err.line, Some(15));
        assert!(err.message.contains("unknown field `colour`"), "{err}");
    }

    #[test]
    fn wrong_type_names_line_and_key() {
        let text =
            format!("{HEADER}{}", station("a", 1, 1)).replace("clusters = 1", "clusters = \"one\"");
        let err = parse(&text).expect_err("wrong type");
        assert_eq!(err.key.as_deref(), Some("station[0].clusters"));
        assert_eq!(err.line, Some(13));
    }

    #[test]
    fn bad_kind_names_line_and_key() {
        let text = format!("{HEADER}{}", station("a", 1, 1)).replace("wired", "cable");
        let err = parse(&text).expect_err("bad kind");
        assert_eq!(err.key.as_deref(), Some("station[0].kind"));
        assert_eq!(err.line, Some(11));
    }

    #[test]
    fn missing_field_names_its_table() {
        let text = HEADER.replace("timezone = \"Asia/Ho_Chi_Minh\"\n", "") + &station("a", 1, 1);
        let err = parse(&text).expect_err("missing timezone");
        assert_eq!(err.key.as_deref(), Some("district.timezone"));
        assert_eq!(err.line, Some(1));
    }

    #[test]
    fn missing_station_field_names_the_station() {
        let text = format!("{HEADER}{}{}", station("a", 1, 1), station("b", 1, 1)).replacen(
            "speakers = 1\n",
            "",
            2,
        );
        let err = parse(&text).expect_err("missing speakers");
        assert_eq!(err.key.as_deref(), Some("station[0].speakers"));
        assert_eq!(err.line, Some(8));
        let text = format!("{HEADER}{}{}", station("a", 1, 1), station("b", 1, 1));
        let text = text
            .rsplit_once("speakers")
            .map(|(head, _)| head.to_owned())
            .expect("present");
        let err = parse(&text).expect_err("missing speakers");
        assert_eq!(err.key.as_deref(), Some("station[1].speakers"));
        assert_eq!(err.line, Some(16));
    }

    #[test]
    fn no_stations_is_an_error() {
        let err = parse(HEADER).expect_err("no stations");
        assert_eq!(err.key.as_deref(), Some("station"));
        let err = parse(&format!("station = []\n{HEADER}")).expect_err("empty stations");
        assert_eq!(err.key.as_deref(), Some("station"));
        assert_eq!(err.line, Some(1));
    }

    #[test]
    fn duplicate_ids_name_the_second_one() {
        let text = format!("{HEADER}{}{}", station("a", 1, 1), station("a", 1, 1));
        let err = parse(&text).expect_err("duplicate");
        assert_eq!(err.key.as_deref(), Some("station[1].id"));
        assert_eq!(err.line, Some(17));
        assert!(err.message.contains("duplicate"), "{err}");
    }

    #[test]
    fn bad_slugs_are_rejected() {
        for id in [
            "",
            "Binh",
            "binh_son",
            "-a",
            "a-",
            "a--b",
            "bình",
            &"a".repeat(65),
        ] {
            let text = format!("{HEADER}{}", station(id, 1, 1));
            let err = parse(&text).expect_err(id);
            assert_eq!(err.key.as_deref(), Some("station[0].id"), "{id}");
            assert_eq!(err.line, Some(9), "{id}");
        }
        assert!(check_slug(&"a".repeat(64)).is_ok());
        assert!(check_slug("a-1-b2").is_ok());
        let text = HEADER.replace("\"binh-son\"", "\"Bình Sơn\"") + &station("a", 1, 1);
        let err = parse(&text).expect_err("district id");
        assert_eq!(err.key.as_deref(), Some("district.id"));
        assert_eq!(err.line, Some(2));
    }

    #[test]
    fn zero_clusters_and_too_few_speakers_are_rejected() {
        let err = parse(&format!("{HEADER}{}", station("a", 0, 0))).expect_err("0 clusters");
        assert_eq!(err.key.as_deref(), Some("station[0].clusters"));
        assert_eq!(err.line, Some(13));

        let err = parse(&format!("{HEADER}{}", station("a", 5, 4))).expect_err("4 < 5");
        assert_eq!(err.key.as_deref(), Some("station[0].speakers"));
        assert_eq!(err.line, Some(14));
        assert_eq!(
            err.to_string(),
            "d.toml:14:12: key `station[0].speakers`: every cluster has at least one speaker, \
             so speakers (4) must be at least clusters (5)"
        );
    }

    #[test]
    fn empty_names_and_timezone_are_rejected() {
        let text = format!("{HEADER}{}", station("a", 1, 1)).replace("\"Bình a\"", "\" \"");
        let err = parse(&text).expect_err("blank name");
        assert_eq!(err.key.as_deref(), Some("station[0].name"));
        assert_eq!(err.line, Some(10));

        let text = HEADER.replace("\"Asia/Ho_Chi_Minh\"", "\"\"") + &station("a", 1, 1);
        let err = parse(&text).expect_err("blank timezone");
        assert_eq!(err.key.as_deref(), Some("district.timezone"));
        assert_eq!(err.line, Some(5));
    }

    #[test]
    fn totals_that_overflow_are_rejected() {
        let text = format!(
            "{HEADER}{}{}",
            station("a", 1, u32::MAX),
            station("b", 1, 1)
        );
        let err = parse(&text).expect_err("overflow");
        assert_eq!(err.key.as_deref(), Some("station[1].speakers"));
    }

    #[test]
    fn load_reads_files_and_names_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("district.toml");
        std::fs::write(&path, format!("{HEADER}{}", station("a", 5, 4))).expect("write");
        let err = District::load(&path).expect_err("invalid");
        assert_eq!(err.source_name, path.display().to_string());
        assert_eq!(err.line, Some(14));

        std::fs::write(&path, BINH_SON_TOML).expect("write");
        assert_eq!(District::load(&path).expect("valid"), District::binh_son());

        let err = District::load(&dir.path().join("missing.toml")).expect_err("missing");
        assert!(
            err.message.starts_with("cannot read district file"),
            "{err}"
        );
        assert_eq!(err.line, None);
    }
}
