//! Admin API tokens beyond the district's own (`data_dir/admin.token`): one `[[admin_token]]`
//! per person or system, with a role. Only the token's SHA-256 is in the config, so the file can
//! be read by whoever maintains the server without handing out control of the loudspeakers;
//! `radio-server token` makes a token and prints its table.

use serde::{Deserialize, Serialize};

use crate::district::is_slug;
use crate::error::{not_blank, Invalid};

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything: the district's staff.
    Admin,
    /// One commune station: read the status, the schedule and the reports, accept normal
    /// bulletins for its station.
    Operator,
    /// Read only: status, schedule, stations, reports, metrics.
    Viewer,
}

/// One `[[admin_token]]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminTokenSettings {
    /// Who holds it, for the logs (e.g. `can-bo-binh-trung`).
    pub name: String,
    pub role: Role,
    /// The station of a commune operator (required for `operator`, refused otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub station: Option<String>,
    /// Hex SHA-256 of the token.
    pub sha256: String,
}

pub(crate) fn check_admin_tokens(tokens: &[AdminTokenSettings]) -> Result<(), Invalid> {
    let mut names = std::collections::BTreeSet::new();
    for (i, token) in tokens.iter().enumerate() {
        let key = |field: &str| format!("admin_token[{i}].{field}");
        not_blank(&key("name"), &token.name)?;
        if !names.insert(token.name.as_str()) {
            return Err(Invalid::new(
                key("name"),
                format!("`{}` names two tokens; names must be unique", token.name),
            ));
        }
        if token.sha256.len() != 64 || !token.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Invalid::new(
                key("sha256"),
                "must be the 64 hex digits of the token's SHA-256 (`radio-server token` prints it)",
            ));
        }
        match (token.role, &token.station) {
            (Role::Operator, None) => {
                return Err(Invalid::new(
                    key("station"),
                    "a commune operator's token names its station, e.g. station = \"binh-trung\"",
                ))
            }
            (Role::Operator, Some(station)) if !is_slug(station) => {
                return Err(Invalid::new(
                    key("station"),
                    format!("`{station}` is not a station id"),
                ))
            }
            (Role::Admin | Role::Viewer, Some(_)) => {
                return Err(Invalid::new(
                    key("station"),
                    "only an operator's token belongs to a station",
                ))
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(role: Role, station: Option<&str>) -> AdminTokenSettings {
        AdminTokenSettings {
            name: "a".into(),
            role,
            station: station.map(str::to_owned),
            sha256: "ab".repeat(32),
        }
    }

    #[test]
    fn roles_and_stations_go_together() {
        assert_eq!(
            check_admin_tokens(&[token(Role::Operator, Some("binh-trung"))]),
            Ok(())
        );
        assert_eq!(check_admin_tokens(&[token(Role::Viewer, None)]), Ok(()));
        let missing = check_admin_tokens(&[token(Role::Operator, None)]).expect_err("no station");
        assert_eq!(missing.fields[0], "admin_token[0].station");
        let extra = check_admin_tokens(&[token(Role::Admin, Some("binh-trung"))]).expect_err("x");
        assert_eq!(extra.fields[0], "admin_token[0].station");
        let mut bad = token(Role::Viewer, None);
        bad.sha256 = "xyz".into();
        assert_eq!(
            check_admin_tokens(&[bad]).expect_err("hash").fields[0],
            "admin_token[0].sha256"
        );
        let twice = [token(Role::Viewer, None), token(Role::Viewer, None)];
        assert_eq!(
            check_admin_tokens(&twice).expect_err("twice").fields[0],
            "admin_token[1].name"
        );
    }
}
