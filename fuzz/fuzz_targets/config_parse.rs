//! The config files an operator writes: any text through the server config, agent config and
//! district file parsers (TOML, then every validation rule), never a panic.
//!
//! Run with `fuzz/run.sh config_parse` (see fuzz/README.md).
//! Beyond "no panic":
//! - an error has a message, and a line/column it names is inside the text;
//! - a server or agent config that is accepted serialises to TOML that is accepted again as the
//!   same config (the crate's own unit tests pin this round trip for the defaults);
//! - an accepted district, written back in the file's shape (`[district]` + `[[station]]`),
//!   parses to the same district.

#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use radio_config::{
    merge_agent, merge_server, AgentOverrides, ConfigError, District, ServerOverrides,
};

fuzz_target!(|data: &[u8]| {
    // The binaries read files with `read_to_string`, which refuses invalid UTF-8; lossy
    // conversion keeps such inputs useful to the parser instead of discarding them.
    let text = String::from_utf8_lossy(data);
    let text = text.as_ref();
    let env = BTreeMap::new();

    match merge_server(
        Some((text, "server.toml")),
        &env,
        &ServerOverrides::default(),
    ) {
        Ok(cfg) => {
            let again = toml::to_string(&cfg).expect("an accepted server config serialises");
            let back = merge_server(
                Some((&again, "again.toml")),
                &env,
                &ServerOverrides::default(),
            )
            .unwrap_or_else(|e| panic!("re-serialised server config refused: {e}\n{again}"));
            assert_eq!(back, cfg, "server config round trip\n{again}");
        }
        Err(e) => check_error(&e, text, "server.toml"),
    }

    match merge_agent(Some((text, "agent.toml")), &env, &AgentOverrides::default()) {
        Ok(cfg) => {
            let again = toml::to_string(&cfg).expect("an accepted agent config serialises");
            let back = merge_agent(
                Some((&again, "again.toml")),
                &env,
                &AgentOverrides::default(),
            )
            .unwrap_or_else(|e| panic!("re-serialised agent config refused: {e}\n{again}"));
            assert_eq!(back, cfg, "agent config round trip\n{again}");
        }
        Err(e) => check_error(&e, text, "agent.toml"),
    }

    match District::from_toml_str(text, "district.toml") {
        Ok(district) => {
            let again = district_file(&district);
            let back = District::from_toml_str(&again, "again.toml")
                .unwrap_or_else(|e| panic!("re-serialised district refused: {e}\n{again}"));
            assert_eq!(back, district, "district round trip\n{again}");
        }
        Err(e) => check_error(&e, text, "district.toml"),
    }
});

/// An error must say what is wrong, and any position it gives must be in the text.
fn check_error(e: &ConfigError, text: &str, source: &str) {
    assert!(
        !e.message.trim().is_empty(),
        "error without a message: {e:?}"
    );
    assert!(
        e.line.is_some() || e.column.is_none(),
        "column without a line: {e:?}"
    );
    if let Some(line) = e.line {
        let lines: Vec<&str> = text.split('\n').collect();
        assert!(
            line >= 1 && line <= lines.len(),
            "line out of the text: {e:?}"
        );
        if let Some(column) = e.column {
            let width = lines[line - 1].chars().count();
            assert!(
                column >= 1 && column <= width + 1,
                "column out of the line: {e:?}"
            );
        }
    }
    if let Some(key) = &e.key {
        assert!(!key.is_empty(), "empty key: {e:?}");
    }
    let shown = e.to_string();
    assert!(
        shown.starts_with(source) && shown.ends_with(&e.message),
        "{shown}"
    );
}

/// The district in the file's own shape: `[district]` with the header, `[[station]]` per station
/// (`District` itself is not `Serialize`; `Station` is, as the file's array element).
fn district_file(district: &District) -> String {
    let mut header = toml::Table::new();
    header.insert("id".into(), district.id.clone().into());
    header.insert("name".into(), district.name.clone().into());
    header.insert("province".into(), district.province.clone().into());
    header.insert("timezone".into(), district.timezone.clone().into());
    header.insert(
        "district_station_clusters".into(),
        i64::from(district.district_station_clusters).into(),
    );
    let stations = district
        .stations
        .iter()
        .map(|s| toml::Value::try_from(s).expect("station serialises"))
        .collect::<Vec<_>>();
    let mut file = toml::Table::new();
    file.insert("district".into(), toml::Value::Table(header));
    file.insert("station".into(), toml::Value::Array(stations));
    toml::to_string(&file).expect("district file serialises")
}
