//! The server's durable state in `data_dir/store` (sled): the schedule as the operators last
//! changed it, the hash of the admin token, the uptime records (`uptime_journal.rs`), the
//! audit log of on-air changes (`audit_log.rs`), the console's accounts and sessions
//! (`operator/accounts.rs`) and the audio library's records (`library/store.rs`).
//!
//! Every write is flushed before it returns: a district server sits on a mains socket in a
//! commune office, and a schedule change the operator was told succeeded must survive a power
//! cut. sled lets one process at a time open the store, so the operator commands never open it:
//! they read `data_dir/admin.token` and ask the running server over HTTP (`admin_client.rs`).
//!
//! The token file holds the only copy of the token; the store keeps its SHA-256, so a copy of
//! the store (a backup, a bug report) does not hand out control of the district's loudspeakers.

use std::io;
use std::path::{Path, PathBuf};

use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::library::{Library, LibraryError};
use crate::operator::accounts::{AccountError, Accounts};
use crate::operator::audit_log::AuditLog;
use crate::records::box_health::BoxHealthMonths;
use crate::records::uptime_journal::UptimeJournal;
use crate::records::write_gate::WriteGate;
use crate::schedule::Schedule;

/// Key of the schedule (JSON).
const SCHEDULE_KEY: &[u8] = b"schedule";
/// Key of the SHA-256 of the admin token.
const TOKEN_HASH_KEY: &[u8] = b"admin-token-sha256";
/// Token file name in the data directory.
pub const TOKEN_FILE: &str = "admin.token";
/// How often sled persists its id generator (its default, stated so that a restored store
/// can be made to continue above the old ids: `backup/store_dump.rs`).
pub(crate) const IDGEN_PERSIST_INTERVAL: u64 = 1_000_000;
/// Random bytes in a token: far beyond guessing over HTTP.
const TOKEN_BYTES: usize = 32;

/// What can go wrong with the store. Messages name the path to look at.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another process holds the store.
    #[error(
        "{}: the store is in use by another process (is another radio-server running with this \
         data directory?)",
        path.display()
    )]
    Locked { path: PathBuf },
    /// sled failed.
    #[error("{}: {reason}", path.display())]
    Db { path: PathBuf, reason: String },
    /// A stored value does not decode (written by an incompatible version, or damaged).
    #[error(
        "{}: the stored {what} cannot be read ({reason}); replace it (for the schedule: \
         `radio-server run --schedule FILE`)",
        path.display()
    )]
    Corrupt {
        path: PathBuf,
        what: &'static str,
        reason: String,
    },
    /// The token file could not be written.
    #[error("{}: cannot write the admin token: {source}", path.display())]
    TokenFile { path: PathBuf, source: io::Error },
}

/// The store of one server's data directory.
#[derive(Debug)]
pub struct Store {
    db: sled::Db,
    path: PathBuf,
    token_path: PathBuf,
    uptime: UptimeJournal,
    audit: AuditLog,
    accounts: Accounts,
    library: Library,
    box_health: BoxHealthMonths,
    /// Every write to the trees passes it; a backup closes it (`write_gate.rs`).
    gate: WriteGate,
}

impl Store {
    /// Opens (creating if needed) `data_dir/store`.
    pub fn open(data_dir: &Path) -> Result<Store, StoreError> {
        let path = data_dir.join("store");
        let db = sled::Config::new()
            .path(&path)
            .idgen_persist_interval(IDGEN_PERSIST_INTERVAL)
            .open()
            .map_err(|e| match e {
                // sled reports a held lock only as text in an `Other` I/O error.
                sled::Error::Io(io)
                    if io.kind() == io::ErrorKind::Other
                        && io.to_string().contains("could not acquire lock") =>
                {
                    StoreError::Locked { path: path.clone() }
                }
                other => StoreError::Db {
                    path: path.clone(),
                    reason: other.to_string(),
                },
            })?;
        let gate = WriteGate::default();
        let uptime = UptimeJournal::open(&db, path.clone())?.gated(gate.clone());
        let audit = AuditLog::open(&db, path.clone())
            .map_err(|e| StoreError::Db {
                path: path.clone(),
                reason: e.to_string(),
            })?
            .gated(gate.clone());
        let accounts = Accounts::open(&db, path.clone())
            .map_err(|e| match e {
                AccountError::Db { path, reason } => StoreError::Db { path, reason },
                other => StoreError::Db {
                    path: path.clone(),
                    reason: other.to_string(),
                },
            })?
            .gated(gate.clone());
        let library = Library::open(&db, path.clone(), data_dir)
            .map_err(|e| match e {
                LibraryError::Db { path, reason } => StoreError::Db { path, reason },
                other => StoreError::Db {
                    path: path.clone(),
                    reason: other.to_string(),
                },
            })?
            .gated(gate.clone());
        let box_health = BoxHealthMonths::open(&db, path.clone())?;
        Ok(Store {
            box_health,
            db,
            path,
            token_path: data_dir.join(TOKEN_FILE),
            uptime,
            audit,
            accounts,
            library,
            gate,
        })
    }

    /// The data directory the store is in.
    pub fn data_dir(&self) -> &Path {
        self.path.parent().unwrap_or(Path::new("."))
    }

    /// The sled database, for a backup's dump (`backup/`).
    pub(crate) fn db(&self) -> &sled::Db {
        &self.db
    }

    /// The gate every write passes, closed by a backup (`write_gate.rs`).
    pub(crate) fn write_gate(&self) -> &WriteGate {
        &self.gate
    }

    /// The agents' uptime journals and the server's view of their connections.
    pub fn uptime(&self) -> &UptimeJournal {
        &self.uptime
    }

    /// Each station's box health per month.
    pub fn box_health(&self) -> &BoxHealthMonths {
        &self.box_health
    }

    /// The audit log of on-air changes.
    pub fn audit(&self) -> &AuditLog {
        &self.audit
    }

    /// The console's accounts and their sessions.
    pub fn accounts(&self) -> &Accounts {
        &self.accounts
    }

    /// The audio library's items and their files.
    pub fn library(&self) -> &Library {
        &self.library
    }

    /// Where the token file is.
    pub fn token_path(&self) -> &Path {
        &self.token_path
    }

    /// The stored schedule, if an operator ever set one.
    pub fn schedule(&self) -> Result<Option<Schedule>, StoreError> {
        let Some(bytes) = self.db.get(SCHEDULE_KEY).map_err(|e| self.db_error(e))? else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| StoreError::Corrupt {
                path: self.path.clone(),
                what: "schedule",
                reason: e.to_string(),
            })
    }

    /// Replaces the stored schedule; durable when this returns.
    pub fn save_schedule(&self, schedule: &Schedule) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(schedule).map_err(|e| StoreError::Db {
            path: self.path.clone(),
            reason: format!("cannot encode the schedule: {e}"),
        })?;
        {
            let _gate = self.gate.enter();
            self.db
                .insert(SCHEDULE_KEY, bytes)
                .map_err(|e| self.db_error(e))?;
        }
        self.flush()
    }

    /// The admin token, hex-encoded. The first call creates it; later calls return the one in
    /// the token file as long as it matches the stored hash. A missing or edited file gets a
    /// fresh token: deleting the file and restarting the server is how an operator rotates it.
    pub fn admin_token(&self) -> Result<String, StoreError> {
        if let Ok(text) = std::fs::read_to_string(&self.token_path) {
            let token = text.trim();
            if self.verify_token(token) {
                return Ok(token.to_owned());
            }
        }
        let mut raw = [0u8; TOKEN_BYTES];
        rand::rngs::OsRng.fill_bytes(&mut raw);
        let token = hex(&raw);
        // The file first: a crash before the hash is stored leaves a file that does not match,
        // which the next start replaces, rather than a hash nobody holds the token for.
        relay_agent::bundle::write_private(&self.token_path, format!("{token}\n").as_bytes())
            .map_err(|source| StoreError::TokenFile {
                path: self.token_path.clone(),
                source,
            })?;
        {
            let _gate = self.gate.enter();
            self.db
                .insert(TOKEN_HASH_KEY, &token_hash(&token)[..])
                .map_err(|e| self.db_error(e))?;
        }
        self.flush()?;
        Ok(token)
    }

    /// Whether `token` is the admin token. Compares hashes in constant time, so the answer's
    /// timing says nothing about how much of a guess was right.
    pub fn verify_token(&self, token: &str) -> bool {
        let Ok(Some(stored)) = self.db.get(TOKEN_HASH_KEY) else {
            return false;
        };
        let given = token_hash(token);
        stored.len() == given.len() && bool::from(given[..].ct_eq(&stored[..]))
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.db.flush().map_err(|e| self.db_error(e))?;
        Ok(())
    }

    fn db_error(&self, e: sled::Error) -> StoreError {
        StoreError::Db {
            path: self.path.clone(),
            reason: e.to_string(),
        }
    }
}

fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::{EntryEnd, Level, Recurrence, ScheduleEntry, SourceSpec, Targets};
    use jiff::civil;

    #[test]
    fn token_is_created_once_and_only_its_hash_is_stored() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let token = store.admin_token().unwrap();
        assert_eq!(token.len(), 2 * TOKEN_BYTES);
        assert!(token.chars().all(|c| c.is_ascii_hexdigit()), "{token}");
        let file = std::fs::read_to_string(dir.path().join(TOKEN_FILE)).unwrap();
        assert_eq!(file.trim(), token);
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(TOKEN_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert_eq!(store.admin_token().unwrap(), token, "stable across calls");
        let stored = store.db.get(TOKEN_HASH_KEY).unwrap().unwrap();
        assert_eq!(&stored[..], &token_hash(&token)[..]);
        // Neither the token nor its hex form is in the store.
        for (_, value) in store.db.iter().flatten() {
            assert_ne!(&value[..], token.as_bytes());
        }
        drop(store);
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(
            store.admin_token().unwrap(),
            token,
            "stable across restarts"
        );
    }

    #[test]
    fn verify_accepts_only_the_token() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert!(!store.verify_token(""), "no token yet: nothing passes");
        let token = store.admin_token().unwrap();
        assert!(store.verify_token(&token));
        assert!(!store.verify_token(""));
        assert!(!store.verify_token(&token[..token.len() - 1]));
        assert!(!store.verify_token(&format!("{token}0")));
        assert!(!store.verify_token(&token.to_uppercase()));
        let mut flipped = token.clone().into_bytes();
        flipped[10] = if flipped[10] == b'a' { b'b' } else { b'a' };
        assert!(!store.verify_token(&String::from_utf8(flipped).unwrap()));
    }

    #[test]
    fn a_deleted_token_file_rotates_the_token() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let old = store.admin_token().unwrap();
        std::fs::remove_file(dir.path().join(TOKEN_FILE)).unwrap();
        let new = store.admin_token().unwrap();
        assert_ne!(old, new);
        assert!(!store.verify_token(&old));
        assert!(store.verify_token(&new));
    }

    #[test]
    fn schedule_round_trips_and_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert!(store.schedule().unwrap().is_none());
        let mut schedule = Schedule::binh_son_default();
        schedule
            .groups
            .insert("ven-bien".into(), vec!["binh-trung/c02".into()]);
        schedule.entries.push(ScheduleEntry {
            id: "ban-tin-dem".into(),
            name: "Bản tin đêm".into(),
            recurrence: Recurrence::Weekly {
                days: vec![civil::Weekday::Monday, civil::Weekday::Sunday],
            },
            start: civil::time(23, 0, 0, 0),
            end: EntryEnd::Duration(jiff::SignedDuration::from_mins(90)),
            source: SourceSpec::Live,
            targets: Targets::Groups(vec!["ven-bien".into()]),
            level: Level::Priority,
        });
        store.save_schedule(&schedule).unwrap();
        assert_eq!(store.schedule().unwrap().as_ref(), Some(&schedule));
        drop(store);
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.schedule().unwrap(), Some(schedule));
    }

    #[test]
    fn a_second_open_is_refused_while_the_first_holds_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let first = Store::open(dir.path()).unwrap();
        // flock locks belong to the open file, so a second open in this process conflicts just
        // as another process would.
        let err = Store::open(dir.path()).expect_err("locked");
        assert!(matches!(err, StoreError::Locked { .. }), "{err:?}");
        assert!(err.to_string().contains("another radio-server"), "{err}");
        drop(first);
        Store::open(dir.path()).expect("free again");
    }

    #[test]
    fn a_damaged_schedule_is_an_error_naming_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.db.insert(SCHEDULE_KEY, &b"{not json"[..]).unwrap();
        let err = store.schedule().expect_err("damaged");
        let text = err.to_string();
        assert!(text.contains("store"), "{text}");
        assert!(text.contains("--schedule"), "{text}");
    }
}
