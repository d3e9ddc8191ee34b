//! The audit log: every on-air change asked of the admin endpoint — who (caller name and role,
//! source address), when, what (action, the id acted on, the targets), and how it ended (done,
//! or refused with the error the caller saw) — stored durably in the `audit` tree of the store.
//!
//! Only changes are recorded; reads are not, and neither are requests refused before a handler
//! saw them (401, 403, 429: those go to the tracing log with their source address). A change
//! the handler refused is recorded, since "who tried to start an emergency at 2 a.m." is worth
//! knowing even when the ladder said no.
//!
//! Keys are the record's Unix milliseconds then a sequence number from sled's persistent id
//! generator (both big-endian), so the tree iterates in time order and two records of the same
//! millisecond, even across restarts, never overwrite each other. Values are JSON. Every
//! append is flushed before it returns, like schedule changes: the admin endpoint answers only
//! once the record is on disk.

use std::path::PathBuf;

use jiff::tz::TimeZone;
use jiff::Timestamp;
use radio_config::Role;
use serde::{Deserialize, Serialize};

use crate::schedule::Targets;

/// The tree of the store that holds the log.
const TREE: &str = "audit";
/// Key length: Unix ms and sequence, 8 bytes each.
const KEY_LEN: usize = 16;

/// What can go wrong reading or writing the log.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// sled failed.
    #[error("{}: the audit log: {reason}", path.display())]
    Db { path: PathBuf, reason: String },
    /// A stored record does not decode (damaged, or written by an incompatible version).
    #[error("{}: audit record {key} cannot be read: {reason}", path.display())]
    Corrupt {
        path: PathBuf,
        key: String,
        reason: String,
    },
    /// A record could not be encoded (not expected: every field is plain data).
    #[error("cannot encode an audit record: {0}")]
    Encode(String),
}

/// An on-air change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AuditAction {
    LiveStart,
    LiveStop,
    EmergencyStart,
    EmergencyStop,
    ScheduleAdd,
    ScheduleRemove,
    /// The whole schedule replaced at start-up (`radio-server run --schedule FILE`).
    ScheduleReplace,
    BulletinSubmit,
    BulletinAccept,
    /// A commune operator's refusal of a normal bulletin for its station.
    BulletinDecline,
    BulletinCancel,
    /// A console sign-in (failed ones go to the tracing log only, like every refused request).
    SignIn,
    SignOut,
    AccountCreate,
    AccountDisable,
    AccountEnable,
    AccountPassword,
    AccountRole,
    /// A recording uploaded to the audio library (refused ones carry the name given).
    LibraryUpload,
    LibraryRename,
    LibraryDelete,
    /// A station's box health warning started (too hot, disk nearly full, an output failing):
    /// raised by the server itself, the id names the station and the warning.
    HealthWarning,
    /// That warning cleared.
    HealthCleared,
    /// A backup of the data directory (`POST /api/v1/backup`).
    Backup,
}

impl AuditAction {
    pub fn as_str(self) -> &'static str {
        match self {
            AuditAction::LiveStart => "live-start",
            AuditAction::LiveStop => "live-stop",
            AuditAction::EmergencyStart => "emergency-start",
            AuditAction::EmergencyStop => "emergency-stop",
            AuditAction::ScheduleAdd => "schedule-add",
            AuditAction::ScheduleRemove => "schedule-remove",
            AuditAction::ScheduleReplace => "schedule-replace",
            AuditAction::BulletinSubmit => "bulletin-submit",
            AuditAction::BulletinAccept => "bulletin-accept",
            AuditAction::BulletinDecline => "bulletin-decline",
            AuditAction::BulletinCancel => "bulletin-cancel",
            AuditAction::SignIn => "sign-in",
            AuditAction::SignOut => "sign-out",
            AuditAction::AccountCreate => "account-create",
            AuditAction::AccountDisable => "account-disable",
            AuditAction::AccountEnable => "account-enable",
            AuditAction::AccountPassword => "account-password",
            AuditAction::AccountRole => "account-role",
            AuditAction::LibraryUpload => "library-upload",
            AuditAction::LibraryRename => "library-rename",
            AuditAction::LibraryDelete => "library-delete",
            AuditAction::HealthWarning => "health-warning",
            AuditAction::HealthCleared => "health-cleared",
            AuditAction::Backup => "backup",
        }
    }
}

/// How a change ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Done,
    /// The HTTP status and the error the caller was given.
    Refused {
        status: u16,
        error: String,
    },
}

impl Outcome {
    /// `done`, or `refused (400): why`.
    pub fn describe(&self) -> String {
        match self {
            Outcome::Done => "done".to_owned(),
            Outcome::Refused { status, error } => format!("refused ({status}): {error}"),
        }
    }
}

/// One change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    pub unix_ms: i64,
    /// `district` for the district's token, the `[[admin_token]]` name otherwise.
    pub caller: String,
    pub role: Role,
    /// The caller's address and port, as the connection showed it.
    pub source: String,
    pub action: AuditAction,
    /// The live broadcast, emergency, schedule entry or bulletin acted on.
    pub id: String,
    /// The stations (or groups) the request named; for an acceptance or a refusal, the
    /// station answering.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub targets: Option<Targets>,
    pub outcome: Outcome,
    /// What else the request said that the record would otherwise lose: the air time of an
    /// acceptance, the reason of a refusal. Absent in records from before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl AuditRecord {
    /// The schedule `radio-server run --schedule FILE` stored at start-up: no caller but the
    /// one who started the server.
    pub fn schedule_from_file(file: &std::path::Path, now: Timestamp) -> Self {
        AuditRecord {
            unix_ms: now.as_millisecond(),
            caller: "local operator (--schedule)".to_owned(),
            role: Role::Admin,
            source: "local".to_owned(),
            action: AuditAction::ScheduleReplace,
            id: file.display().to_string(),
            targets: None,
            outcome: Outcome::Done,
            detail: None,
        }
    }

    /// A station's health warning starting or clearing: raised by the server from its agent's
    /// report, not asked by anyone.
    pub fn health(station: &str, kind: &str, started: bool, detail: &str, now: Timestamp) -> Self {
        AuditRecord {
            unix_ms: now.as_millisecond(),
            caller: "server (box health)".to_owned(),
            role: Role::Admin,
            source: format!("agent {station}"),
            action: if started {
                AuditAction::HealthWarning
            } else {
                AuditAction::HealthCleared
            },
            id: format!("{station}/{kind}"),
            // So `?station=` finds it like any change aimed at the station.
            targets: Some(Targets::Stations(vec![station.to_owned()])),
            outcome: Outcome::Done,
            detail: Some(detail.to_owned()),
        }
    }

    /// The record for a listing, with its time in UTC and in `tz`.
    pub fn view(self, tz: &TimeZone) -> AuditView {
        let (utc, local) = match Timestamp::from_millisecond(self.unix_ms) {
            Ok(t) => (
                t.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
                tz.to_datetime(t).strftime("%Y-%m-%d %H:%M:%S").to_string(),
            ),
            Err(_) => (self.unix_ms.to_string(), self.unix_ms.to_string()),
        };
        AuditView {
            utc,
            local,
            record: self,
        }
    }

    /// The JSON stored for a record.
    pub fn encode(&self) -> Result<Vec<u8>, AuditError> {
        serde_json::to_vec(self).map_err(|e| AuditError::Encode(e.to_string()))
    }

    /// A stored record; an error (never a panic) for anything that is not one.
    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
        serde_json::from_slice(bytes).map_err(|e| e.to_string())
    }
}

/// A record as `GET /api/v1/audit` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditView {
    /// RFC 3339 in UTC.
    pub utc: String,
    /// The district's local time (`YYYY-MM-DD HH:MM:SS`).
    pub local: String,
    #[serde(flatten)]
    pub record: AuditRecord,
}

/// `GET /api/v1/audit`: the records in time order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditListing {
    /// The zone of the `local` times.
    pub timezone: String,
    pub records: Vec<AuditView>,
    /// More records lie in the range than one answer holds: ask for a shorter one.
    pub truncated: bool,
}

/// The log in the store.
#[derive(Debug, Clone)]
pub struct AuditLog {
    db: sled::Db,
    tree: sled::Tree,
    path: PathBuf,
    gate: crate::records::write_gate::WriteGate,
}

impl AuditLog {
    pub(crate) fn open(db: &sled::Db, path: PathBuf) -> Result<Self, sled::Error> {
        Ok(AuditLog {
            db: db.clone(),
            tree: db.open_tree(TREE)?,
            path,
            gate: Default::default(),
        })
    }

    /// Writes pass `gate` (the store's, see `records/write_gate.rs`).
    pub(crate) fn gated(mut self, gate: crate::records::write_gate::WriteGate) -> Self {
        self.gate = gate;
        self
    }

    /// Logs `record` at info level with the target `audit` (for log collectors), then stores
    /// it and flushes. Blocking (it waits for the disk): call it off the async runtime's
    /// threads.
    pub fn append(&self, record: &AuditRecord) -> Result<(), AuditError> {
        tracing::info!(
            target: "audit",
            caller = %record.caller,
            role = ?record.role,
            source = %record.source,
            action = record.action.as_str(),
            id = %record.id,
            targets = ?record.targets,
            "{}",
            record.outcome.describe()
        );
        let value = record.encode()?;
        {
            let _gate = self.gate.enter();
            let seq = self.db.generate_id().map_err(|e| self.db_error(e))?;
            self.tree
                .insert(key(record.unix_ms, seq), value)
                .map_err(|e| self.db_error(e))?;
        }
        self.tree.flush().map_err(|e| self.db_error(e))?;
        Ok(())
    }

    /// The records from `from_ms` to `to_ms` (both included), oldest first, at most `limit`;
    /// whether more were left out.
    pub fn range(
        &self,
        from_ms: i64,
        to_ms: i64,
        limit: usize,
    ) -> Result<(Vec<AuditRecord>, bool), AuditError> {
        self.range_matching(from_ms, to_ms, limit, |_| true)
    }

    /// Like [`AuditLog::range`], only the records `keep` takes; the limit counts those, so a
    /// narrow filter reaches back over the whole range.
    pub fn range_matching(
        &self,
        from_ms: i64,
        to_ms: i64,
        limit: usize,
        keep: impl Fn(&AuditRecord) -> bool,
    ) -> Result<(Vec<AuditRecord>, bool), AuditError> {
        let mut records = Vec::new();
        if from_ms > to_ms {
            return Ok((records, false));
        }
        for item in self.tree.range(key(from_ms, 0)..=key(to_ms, u64::MAX)) {
            let (k, v) = item.map_err(|e| self.db_error(e))?;
            let corrupt = |reason: String| AuditError::Corrupt {
                path: self.path.clone(),
                key: hex(&k),
                reason,
            };
            if k.len() != KEY_LEN {
                return Err(corrupt(format!("a key of {} bytes", k.len())));
            }
            let record = AuditRecord::decode(&v).map_err(corrupt)?;
            if keep(&record) {
                // Counted among the kept only: records the filter drops after the last kept
                // one leave nothing out.
                if records.len() == limit {
                    return Ok((records, true));
                }
                records.push(record);
            }
        }
        Ok((records, false))
    }

    /// Records stored.
    pub fn len(&self) -> usize {
        self.tree.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tree.is_empty()
    }

    fn db_error(&self, e: sled::Error) -> AuditError {
        AuditError::Db {
            path: self.path.clone(),
            reason: e.to_string(),
        }
    }
}

/// Times before 1970 (a badly set clock) sort first rather than wrap around.
fn key(unix_ms: i64, seq: u64) -> [u8; KEY_LEN] {
    let mut out = [0u8; KEY_LEN];
    out[..8].copy_from_slice(&u64::try_from(unix_ms).unwrap_or(0).to_be_bytes());
    out[8..].copy_from_slice(&seq.to_be_bytes());
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(unix_ms: i64, id: &str) -> AuditRecord {
        AuditRecord {
            unix_ms,
            caller: "can-bo-binh-trung".into(),
            role: Role::Operator,
            source: "127.0.0.1:50000".into(),
            action: AuditAction::BulletinAccept,
            id: id.into(),
            targets: Some(Targets::Stations(vec!["binh-trung".into()])),
            outcome: Outcome::Refused {
                status: 400,
                error: "bulletin `x` does not target binh-hai".into(),
            },
            detail: None,
        }
    }

    fn open() -> (tempfile::TempDir, AuditLog) {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new().path(dir.path()).open().unwrap();
        let log = AuditLog::open(&db, dir.path().to_path_buf()).unwrap();
        (dir, log)
    }

    #[test]
    fn records_round_trip_and_come_back_in_time_order() {
        let (_dir, log) = open();
        // Appended out of order, twice in the same millisecond.
        for (ms, id) in [(3_000, "c"), (1_000, "a"), (2_000, "b1"), (2_000, "b2")] {
            log.append(&record(ms, id)).unwrap();
        }
        let (all, truncated) = log.range(i64::MIN, i64::MAX, 100).unwrap();
        assert!(!truncated);
        let ids: Vec<&str> = all.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["a", "b1", "b2", "c"]);
        assert_eq!(all[0], record(1_000, "a"));
        let (middle, _) = log.range(2_000, 2_000, 100).unwrap();
        assert_eq!(middle.len(), 2);
        let (first, truncated) = log.range(0, 10_000, 2).unwrap();
        assert_eq!((first.len(), truncated), (2, true));
        let (exact, truncated) = log.range(0, 10_000, 4).unwrap();
        assert_eq!((exact.len(), truncated), (4, false));
        assert!(log.range(5, 4, 10).unwrap().0.is_empty());
    }

    #[test]
    fn a_filter_keeps_its_limit_for_the_records_it_takes() {
        let (_dir, log) = open();
        for (ms, id) in [
            (1_000, "a"),
            (2_000, "b"),
            (3_000, "a"),
            (4_000, "a"),
            (5_000, "b"),
        ] {
            log.append(&record(ms, id)).unwrap();
        }
        let only_a = |r: &AuditRecord| r.id == "a";
        let (kept, truncated) = log.range_matching(0, 10_000, 2, only_a).unwrap();
        let times: Vec<i64> = kept.iter().map(|r| r.unix_ms).collect();
        assert_eq!((times, truncated), (vec![1_000, 3_000], true));
        let (kept, truncated) = log.range_matching(0, 10_000, 3, only_a).unwrap();
        assert_eq!((kept.len(), truncated), (3, false));
    }

    #[test]
    fn a_damaged_record_is_an_error_not_a_panic() {
        let (_dir, log) = open();
        log.append(&record(1_000, "a")).unwrap();
        log.tree
            .insert(key(2_000, 7), &b"{\"unix_ms\": 2"[..])
            .unwrap();
        let err = log.range(0, 10_000, 10).expect_err("damaged");
        assert!(matches!(err, AuditError::Corrupt { .. }), "{err:?}");
        assert!(err.to_string().contains("audit record"), "{err}");
        log.tree.remove(key(2_000, 7)).unwrap();
        log.tree.insert(&b"short"[..], &b"{}"[..]).unwrap();
        let err = log.range(0, i64::MAX, 10).expect_err("bad key");
        assert!(err.to_string().contains("5 bytes"), "{err}");
        for junk in [
            &b""[..],
            b"null",
            b"[]",
            b"{\"unix_ms\":\"x\"}",
            &[0xff, 0xfe],
        ] {
            assert!(AuditRecord::decode(junk).is_err(), "{junk:?}");
        }
    }

    #[test]
    fn views_show_utc_and_local_time() {
        let tz = crate::schedule::load_timezone("Asia/Ho_Chi_Minh").unwrap();
        // 2025-09-23T07:00:00.250Z
        let view = record(1_758_610_800_250, "a").view(&tz);
        assert_eq!(view.utc, "2025-09-23T07:00:00.250Z");
        assert_eq!(view.local, "2025-09-23 14:00:00");
        let json = serde_json::to_value(&view).unwrap();
        assert_eq!(json["action"], "bulletin-accept");
        assert_eq!(json["role"], "operator");
        assert_eq!(json["outcome"]["refused"]["status"], 400);
        let back: AuditView = serde_json::from_value(json).unwrap();
        assert_eq!(back, view);
    }
}
