//! Which station certificates are valid, expiring, expired or revoked: `radio-server
//! certificates`, and the warnings the running server logs at start and every day.
//!
//! A station whose certificate expires is refused at its next handshake and its loudspeakers
//! fall silent, so the warnings start [`EXPIRY_WARNING_DAYS`] ahead: time for a part-time
//! operator to enrol the station again and carry the bundle out (the procedure is in
//! docs/SECURITY.md, "Certificate expiry and renewal").

use std::path::Path;

use jiff::{SignedDuration, Timestamp};
use serde::Serialize;

use crate::identity::enrolment_register::{EnrolmentRegister, IssuedCertificate, RegisterError};
use crate::identity::revocation_list::{RevocationError, RevocationList};

/// Days before a station's certificate expires from which the server warns (at every
/// session start of that station, and in the daily check).
pub const EXPIRY_WARNING_DAYS: i64 = 90;

/// Errors reading the CA directory.
#[derive(Debug, thiserror::Error)]
pub enum ExpiryError {
    /// The enrolment register.
    #[error(transparent)]
    Register(#[from] RegisterError),
    /// The revocation list.
    #[error(transparent)]
    Revocation(#[from] RevocationError),
}

/// What a certificate is good for now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CertificateState {
    /// It gets in, for more than [`EXPIRY_WARNING_DAYS`].
    Valid,
    /// It gets in, but expires within [`EXPIRY_WARNING_DAYS`].
    Expiring,
    /// Past its end: refused.
    Expired,
    /// Revoked: refused.
    Revoked,
    /// Older than a newer valid certificate of the same station (still accepted until it
    /// expires or is revoked: `radio-server revoke ID --serial S` retires it).
    Superseded,
}

/// One certificate and its state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CertificateStatus {
    /// The station.
    pub commune: String,
    /// Serial, 16 hex digits.
    pub serial: String,
    /// When it was issued.
    pub issued_at: Timestamp,
    /// When it expires (unknown for certificates registered before expiry was recorded).
    pub expires_at: Option<Timestamp>,
    /// Whole days left (negative once expired).
    pub days_left: Option<i64>,
    /// What it is good for.
    pub state: CertificateState,
}

/// Every certificate of the CA in `ca_dir`, by station, oldest first.
pub fn certificates(ca_dir: &Path, now: Timestamp) -> Result<Vec<CertificateStatus>, ExpiryError> {
    let revoked = RevocationList::load(ca_dir)?;
    let mut all = Vec::new();
    for (commune, issued) in EnrolmentRegister::new(ca_dir).all()? {
        let newest_good = issued
            .iter()
            .rev()
            .find(|c| !revoked.contains(c.serial) && !expired(c, now))
            .map(|c| c.serial);
        for c in &issued {
            let days_left = c
                .expires_at
                .map(|e| e.duration_since(now).as_secs() / 86_400);
            let state = if revoked.contains(c.serial) {
                CertificateState::Revoked
            } else if expired(c, now) {
                CertificateState::Expired
            } else if newest_good.is_some_and(|s| s != c.serial) {
                CertificateState::Superseded
            } else if days_left.is_some_and(|d| d < EXPIRY_WARNING_DAYS) {
                CertificateState::Expiring
            } else {
                CertificateState::Valid
            };
            all.push(CertificateStatus {
                commune: commune.clone(),
                serial: format!("{:016x}", c.serial),
                issued_at: c.issued_at,
                expires_at: c.expires_at,
                days_left,
                state,
            });
        }
    }
    Ok(all)
}

fn expired(c: &IssuedCertificate, now: Timestamp) -> bool {
    c.expires_at.is_some_and(|e| e <= now)
}

/// One line per station of `stations` that will be refused soon or already is: its newest
/// certificate is expiring or expired, or every certificate it has is revoked.
pub fn warnings(
    ca_dir: &Path,
    stations: &[String],
    now: Timestamp,
) -> Result<Vec<String>, ExpiryError> {
    let all = certificates(ca_dir, now)?;
    let mut lines = Vec::new();
    for station in stations {
        let mine: Vec<&CertificateStatus> = all.iter().filter(|c| &c.commune == station).collect();
        let good = mine.iter().find(|c| {
            matches!(
                c.state,
                CertificateState::Valid | CertificateState::Expiring
            )
        });
        let Some(newest) = good.or(mine.last()) else {
            continue;
        };
        let renew = format!(
            "renew it: radio-server enroll --commune {station}, then install the new bundle"
        );
        match newest.state {
            CertificateState::Expiring => lines.push(format!(
                "{station}: its certificate expires in {} days ({}); {renew}",
                newest.days_left.unwrap_or_default(),
                newest.expires_at.map(|e| e.to_string()).unwrap_or_default()
            )),
            CertificateState::Expired => lines.push(format!(
                "{station}: its certificate expired on {}: the station is refused; {renew}",
                newest.expires_at.map(|e| e.to_string()).unwrap_or_default()
            )),
            CertificateState::Revoked => lines.push(format!(
                "{station}: its certificate is revoked: the station is refused until it is \
                 enrolled again"
            )),
            CertificateState::Valid | CertificateState::Superseded => {}
        }
    }
    Ok(lines)
}

/// Logs [`warnings`] for the district's stations now and every day while the server runs.
/// Runs until aborted.
pub async fn watch(ca_dir: std::path::PathBuf, stations: Vec<String>) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(24 * 3600));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let dir = ca_dir.clone();
        let names = stations.clone();
        let found =
            tokio::task::spawn_blocking(move || warnings(&dir, &names, Timestamp::now())).await;
        match found {
            Ok(Ok(lines)) => {
                for line in lines {
                    tracing::warn!("certificate: {line}");
                }
            }
            Ok(Err(e)) => tracing::warn!("cannot check the stations' certificates: {e}"),
            Err(e) => tracing::warn!("cannot check the stations' certificates: {e}"),
        }
    }
}

/// `now` plus whole days, for tests and callers that think in days.
pub fn days_after(now: Timestamp, days: i64) -> Timestamp {
    now.checked_add(SignedDuration::from_hours(24 * days))
        .unwrap_or(now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::revocation_list::revoke;

    fn enrol(ca_dir: &Path, commune: &str, serial: u64, issued: Timestamp, days: i64) {
        EnrolmentRegister::new(ca_dir)
            .record(
                commune,
                IssuedCertificate {
                    serial,
                    issued_at: issued,
                    expires_at: Some(days_after(issued, days)),
                },
            )
            .unwrap();
    }

    #[test]
    fn states_and_warnings_follow_expiry_revocation_and_renewal() {
        let dir = tempfile::tempdir().unwrap();
        let now: Timestamp = "2030-01-01T00:00:00Z".parse().unwrap();
        let long_ago = days_after(now, -1000);
        enrol(dir.path(), "binh-chau", 1, long_ago, 2000); // valid
        enrol(dir.path(), "binh-trung", 2, long_ago, 1030); // expiring in 30 days
        enrol(dir.path(), "binh-thanh", 3, long_ago, 900); // expired
        enrol(dir.path(), "binh-dong", 4, long_ago, 1030);
        enrol(dir.path(), "binh-dong", 5, days_after(now, -1), 1827); // renewed
        enrol(dir.path(), "binh-hai", 6, long_ago, 2000);
        revoke(dir.path(), "binh-hai", None, "stolen", now).unwrap();
        let states: Vec<(String, CertificateState)> = certificates(dir.path(), now)
            .unwrap()
            .into_iter()
            .map(|c| (c.serial, c.state))
            .collect();
        let state = |serial: u64| {
            states
                .iter()
                .find(|(s, _)| *s == format!("{serial:016x}"))
                .map(|(_, st)| *st)
        };
        assert_eq!(state(1), Some(CertificateState::Valid));
        assert_eq!(state(2), Some(CertificateState::Expiring));
        assert_eq!(state(3), Some(CertificateState::Expired));
        assert_eq!(state(4), Some(CertificateState::Superseded));
        assert_eq!(state(5), Some(CertificateState::Valid));
        assert_eq!(state(6), Some(CertificateState::Revoked));
        let stations: Vec<String> = [
            "binh-chau",
            "binh-trung",
            "binh-thanh",
            "binh-dong",
            "binh-hai",
            "binh-khuong",
        ]
        .map(String::from)
        .to_vec();
        let lines = warnings(dir.path(), &stations, now).unwrap();
        assert_eq!(lines.len(), 3, "{lines:#?}");
        assert!(lines[0].starts_with("binh-trung: its certificate expires in 30 days"));
        assert!(lines[1].starts_with("binh-thanh: its certificate expired"));
        assert!(lines[2].starts_with("binh-hai: its certificate is revoked"));
    }
}
