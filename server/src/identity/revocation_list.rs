//! Revoked station certificates: `data_dir/ca/revoked.toml`, written by `radio-server revoke`
//! and read by the running server, which refuses those certificates at the TLS handshake and
//! closes their open connections.
//!
//! A plain file beside the CA rather than the sled store, because the store is locked by the
//! running server while `revoke`, like `enroll`, must work whether it runs or not; the server
//! notices a change by polling the file's identity ([`Revocations::refresh`], every
//! [`REFRESH_INTERVAL`]), which costs one `stat` and needs no channel between the processes.
//!
//! Entries name serial numbers, not stations: `revoke` lists every certificate issued to the
//! station so far (from the [`EnrolmentRegister`]), so a stolen bundle stays out while the
//! station's next enrolment gets in. A file that no longer parses (a hand edit gone wrong)
//! never lifts a revocation: the server keeps the last list it read and logs an error.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::identity::enrolment_register::{EnrolmentRegister, RegisterError};

/// How often the running server looks at the file: an open connection of a revoked station
/// is closed within this plus a round trip, well inside the second the district asked for.
pub const REFRESH_INTERVAL: Duration = Duration::from_millis(250);

/// Errors reading, writing or applying the list.
#[derive(Debug, thiserror::Error)]
pub enum RevocationError {
    /// The file could not be read or written.
    #[error("{path}: {error}")]
    Io {
        /// The file.
        path: String,
        /// What the OS said.
        error: std::io::Error,
    },
    /// The file does not parse.
    #[error("{path}: {error}")]
    Malformed {
        /// The file.
        path: String,
        /// What is wrong, with its line.
        error: String,
    },
    /// The enrolment register could not be read.
    #[error(transparent)]
    Register(#[from] RegisterError),
    /// Nothing to revoke.
    #[error(
        "no certificate was issued to `{0}` by this server's CA (see `radio-server certificates`)"
    )]
    NeverEnrolled(String),
    /// `--serial` names no certificate of the station.
    #[error("`{commune}` has no certificate with serial {serial:016x} (see `radio-server certificates`)")]
    UnknownSerial {
        /// The station.
        commune: String,
        /// The serial asked for.
        serial: u64,
    },
}

/// One revoked certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Revoked {
    /// The station it was issued to.
    pub commune: String,
    /// Its serial number.
    #[serde(with = "crate::identity::enrolment_register::serial_hex")]
    pub serial: u64,
    /// When it was revoked.
    pub revoked_at: Timestamp,
    /// Why, as the operator said.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListFile {
    #[serde(default)]
    revoked: Vec<Revoked>,
}

/// The list as stored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RevocationList {
    entries: Vec<Revoked>,
}

/// `data_dir/ca/revoked.toml`.
pub fn list_path(ca_dir: &Path) -> PathBuf {
    ca_dir.join("revoked.toml")
}

impl RevocationList {
    /// Reads the list; a missing file is an empty list.
    pub fn load(ca_dir: &Path) -> Result<Self, RevocationError> {
        let path = list_path(ca_dir);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(error) => {
                return Err(RevocationError::Io {
                    path: path.display().to_string(),
                    error,
                })
            }
        };
        let file: ListFile = toml::from_str(&text).map_err(|e| RevocationError::Malformed {
            path: path.display().to_string(),
            error: e.to_string(),
        })?;
        Ok(Self {
            entries: file.revoked,
        })
    }

    /// Writes the list, atomically: the running server never reads half of it.
    pub fn save(&self, ca_dir: &Path) -> Result<(), RevocationError> {
        let path = list_path(ca_dir);
        let body = toml::to_string(&ListFile {
            revoked: self.entries.clone(),
        })
        .map_err(|e| RevocationError::Malformed {
            path: path.display().to_string(),
            error: e.to_string(),
        })?;
        let text = format!(
            "# Station certificates the server refuses (radio-server revoke). The running server\n\
             # reads this file within a second of a change. Removing an entry lets that\n\
             # certificate in again.\n{body}"
        );
        relay_agent::bundle::write_private(&path, text.as_bytes()).map_err(|error| {
            RevocationError::Io {
                path: path.display().to_string(),
                error,
            }
        })
    }

    /// Every entry, in the order revoked.
    pub fn entries(&self) -> &[Revoked] {
        &self.entries
    }

    /// Whether the certificate with `serial` is revoked.
    pub fn contains(&self, serial: u64) -> bool {
        self.entries.iter().any(|r| r.serial == serial)
    }

    fn serials(&self) -> HashSet<u64> {
        self.entries.iter().map(|r| r.serial).collect()
    }
}

/// Revokes the certificates of `commune`: every one issued so far, or only `serial` (to retire
/// the old certificate once a renewed one is installed). Returns the newly revoked entries;
/// revoking twice is not an error and adds nothing.
pub fn revoke(
    ca_dir: &Path,
    commune: &str,
    serial: Option<u64>,
    reason: &str,
    now: Timestamp,
) -> Result<Vec<Revoked>, RevocationError> {
    let issued = EnrolmentRegister::new(ca_dir).certificates(commune)?;
    if issued.is_empty() {
        return Err(RevocationError::NeverEnrolled(commune.to_owned()));
    }
    if let Some(serial) = serial {
        if !issued.iter().any(|c| c.serial == serial) {
            return Err(RevocationError::UnknownSerial {
                commune: commune.to_owned(),
                serial,
            });
        }
    }
    let mut list = RevocationList::load(ca_dir)?;
    let added: Vec<Revoked> = issued
        .iter()
        .filter(|c| serial.is_none_or(|s| s == c.serial))
        .filter(|c| !list.contains(c.serial))
        .map(|c| Revoked {
            commune: commune.to_owned(),
            serial: c.serial,
            revoked_at: now,
            reason: reason.to_owned(),
        })
        .collect();
    if !added.is_empty() {
        list.entries.extend(added.iter().cloned());
        list.save(ca_dir)?;
    }
    Ok(added)
}

/// What identifies a version of the file without reading it: a rewrite (a rename onto it)
/// changes the inode, an edit in place the time or length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    inode: u64,
    modified: Option<SystemTime>,
    len: u64,
}

fn stamp(path: &Path) -> Option<Stamp> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).ok()?;
    Some(Stamp {
        inode: meta.ino(),
        modified: meta.modified().ok(),
        len: meta.len(),
    })
}

#[derive(Debug)]
struct Current {
    stamp: Option<Stamp>,
    checked: Instant,
    revoked: Arc<HashSet<u64>>,
}

/// The running server's view of the list, shared by the TLS verifier (every handshake) and
/// the task that closes revoked stations' connections.
#[derive(Debug)]
pub struct Revocations {
    ca_dir: PathBuf,
    current: Mutex<Current>,
}

impl Revocations {
    /// Reads the list in `ca_dir` now: a list that does not parse stops the server from
    /// starting, since running without it would let revoked stations in.
    pub fn open(ca_dir: &Path) -> Result<Self, RevocationError> {
        let stamp = stamp(&list_path(ca_dir));
        let list = RevocationList::load(ca_dir)?;
        Ok(Self {
            ca_dir: ca_dir.to_path_buf(),
            current: Mutex::new(Current {
                stamp,
                checked: Instant::now(),
                revoked: Arc::new(list.serials()),
            }),
        })
    }

    /// A view that has read nothing yet and reads the file at its first refresh: for a server
    /// whose list could not be read when it was built (the TLS handshake, opened with
    /// [`Revocations::open`], refuses to start on that).
    pub fn unread(ca_dir: &Path) -> Self {
        Self {
            ca_dir: ca_dir.to_path_buf(),
            current: Mutex::new(Current {
                stamp: None,
                checked: Instant::now(),
                revoked: Arc::new(HashSet::new()),
            }),
        }
    }

    /// Whether `serial` is revoked, looking at the file again if it was last looked at more
    /// than [`REFRESH_INTERVAL`] ago (a handshake may come before the closing task's next turn).
    pub fn is_revoked(&self, serial: u64) -> bool {
        let stale = self
            .current
            .lock()
            .map(|c| c.checked.elapsed() >= REFRESH_INTERVAL)
            .unwrap_or(true);
        if stale {
            if let Err(e) = self.refresh() {
                tracing::error!("cannot read the revocation list; keeping the last one read: {e}");
            }
        }
        self.revoked().contains(&serial)
    }

    /// The serials revoked, as last read.
    pub fn revoked(&self) -> Arc<HashSet<u64>> {
        match self.current.lock() {
            Ok(c) => c.revoked.clone(),
            Err(poisoned) => poisoned.into_inner().revoked.clone(),
        }
    }

    /// Reads the file again if it changed; `Ok(true)` if the list is new. On an error the last
    /// list read stays in force.
    pub fn refresh(&self) -> Result<bool, RevocationError> {
        let now = stamp(&list_path(&self.ca_dir));
        {
            let Ok(mut current) = self.current.lock() else {
                return Ok(false);
            };
            current.checked = Instant::now();
            if current.stamp == now {
                return Ok(false);
            }
        }
        let list = RevocationList::load(&self.ca_dir)?;
        let serials = list.serials();
        let Ok(mut current) = self.current.lock() else {
            return Ok(false);
        };
        current.stamp = now;
        let changed = *current.revoked != serials;
        current.revoked = Arc::new(serials);
        Ok(changed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::enrolment_register::IssuedCertificate;

    fn enrol(ca_dir: &Path, commune: &str, serial: u64) {
        EnrolmentRegister::new(ca_dir)
            .record(
                commune,
                IssuedCertificate {
                    serial,
                    issued_at: Timestamp::now(),
                    expires_at: None,
                },
            )
            .unwrap();
    }

    #[test]
    fn revoking_a_station_refuses_its_certificates_so_far_not_its_next_one() {
        let dir = tempfile::tempdir().unwrap();
        enrol(dir.path(), "binh-trung", 1);
        enrol(dir.path(), "binh-trung", 2);
        enrol(dir.path(), "binh-chau", 3);
        let revocations = Revocations::open(dir.path()).unwrap();
        assert!(!revocations.is_revoked(1));
        let added = revoke(dir.path(), "binh-trung", None, "stolen", Timestamp::now()).unwrap();
        assert_eq!(added.iter().map(|r| r.serial).collect::<Vec<_>>(), [1, 2]);
        assert!(revocations.refresh().unwrap(), "the change is seen");
        assert!(revocations.is_revoked(1) && revocations.is_revoked(2));
        assert!(!revocations.is_revoked(3), "another station is untouched");
        enrol(dir.path(), "binh-trung", 4);
        assert!(!revocations.is_revoked(4), "re-enrolment gets in");
        assert!(
            revoke(dir.path(), "binh-trung", Some(2), "", Timestamp::now())
                .unwrap()
                .is_empty(),
            "revoking twice adds nothing"
        );
        assert!(!revocations.refresh().unwrap());
    }

    #[test]
    fn one_serial_can_be_retired_after_a_renewal() {
        let dir = tempfile::tempdir().unwrap();
        enrol(dir.path(), "binh-trung", 10);
        enrol(dir.path(), "binh-trung", 11);
        revoke(
            dir.path(),
            "binh-trung",
            Some(10),
            "renewed",
            Timestamp::now(),
        )
        .unwrap();
        let list = RevocationList::load(dir.path()).unwrap();
        assert!(list.contains(10) && !list.contains(11));
        let err = revoke(dir.path(), "binh-trung", Some(12), "", Timestamp::now()).unwrap_err();
        assert!(
            matches!(err, RevocationError::UnknownSerial { .. }),
            "{err}"
        );
        let err = revoke(dir.path(), "binh-chau", None, "", Timestamp::now()).unwrap_err();
        assert!(matches!(err, RevocationError::NeverEnrolled(_)), "{err}");
    }

    #[test]
    fn a_broken_list_keeps_the_last_one_in_force_and_stops_a_start() {
        let dir = tempfile::tempdir().unwrap();
        enrol(dir.path(), "binh-trung", 5);
        revoke(dir.path(), "binh-trung", None, "", Timestamp::now()).unwrap();
        let revocations = Revocations::open(dir.path()).unwrap();
        assert!(revocations.is_revoked(5));
        std::fs::write(list_path(dir.path()), "[[revoked]]\nserial = 5\n").unwrap();
        assert!(revocations.refresh().is_err());
        assert!(
            revocations.is_revoked(5),
            "a hand edit gone wrong lifts nothing"
        );
        let err = Revocations::open(dir.path()).unwrap_err();
        assert!(err.to_string().contains("revoked.toml"), "{err}");
    }
}
