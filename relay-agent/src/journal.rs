//! The agent's uptime journal: every state transition and a periodic heartbeat, numbered and
//! timed, kept on disk (sled, `state_dir/journal`) until the server has acknowledged storing
//! it.
//!
//! # Guarantees
//! - A record is written with its sequence number in one atomic step and flushed before
//!   [`Journal::append`] returns: a power cut loses at most the event in flight, never a number
//!   (sequence numbers have no gaps) and never a record already written.
//! - Records are deleted only by [`Journal::acknowledge`], i.e. once the server has flushed them.
//! - Whether the previous run ended cleanly is known at start: a `running` flag is set when the
//!   journal opens and cleared by [`Journal::close`].
//!
//! # Size policy
//! `max_records` bounds what waits for upload. Beyond it, *heartbeats* are not written; they
//! are counted, and the next heartbeat written carries the count (`heartbeats_dropped`).
//! Transitions (process, link, output, programmes) are always written: they are what the
//! reports are made of, and they are few (one per change, not per minute). At the defaults
//! (60 s heartbeats, 100,000 records) the journal rides out about two months without a link
//! before it thins out heartbeats, in a few megabytes.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::Arc;

use radio_proto::{Decode, Encode, JournalAck, JournalBatch, JournalEvent, JournalRecord};
use sled::transaction::{ConflictableTransactionError, TransactionError};
use sled::Transactional;

use crate::supervise::{spawn_thread, SupervisedThread};

/// Events waiting for the writer thread. Far above any real burst: events are transitions.
const QUEUE: usize = 4096;

const NEXT_SEQ: &[u8] = b"next-seq";
const JOURNAL_ID: &[u8] = b"journal-id";
const RUNNING: &[u8] = b"running";

/// What can go wrong with the journal. Messages name the path.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("journal {}: {reason}", path.display())]
    Db { path: PathBuf, reason: String },
    #[error("journal {}: a stored record cannot be read ({reason}); move the directory away to start a new journal", path.display())]
    Corrupt { path: PathBuf, reason: String },
}

/// The journal on disk.
#[derive(Debug)]
pub struct Journal {
    db: sled::Db,
    records: sled::Tree,
    meta: sled::Tree,
    journal_id: u64,
    max_records: usize,
    /// Records waiting: kept here because sled counts by scanning every key.
    waiting: AtomicUsize,
    heartbeats_dropped: AtomicU64,
    path: PathBuf,
}

fn u64_value(value: Option<sled::IVec>) -> Option<u64> {
    value.and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok().map(u64::from_be_bytes))
}

impl Journal {
    /// Opens (creating) the journal in `dir`; also says whether the previous run ended cleanly
    /// (true for a new journal).
    pub fn open(dir: &Path, max_records: usize) -> Result<(Journal, bool), JournalError> {
        let path = dir.to_path_buf();
        let err = |e: sled::Error| JournalError::Db {
            path: path.clone(),
            reason: e.to_string(),
        };
        let db = sled::Config::new().path(dir).open().map_err(err)?;
        let records = db.open_tree("records").map_err(err)?;
        let meta = db.open_tree("meta").map_err(err)?;
        let journal_id = match u64_value(meta.get(JOURNAL_ID).map_err(err)?) {
            Some(id) => id,
            None => {
                let id: u64 = rand::random::<u64>().max(1);
                meta.insert(JOURNAL_ID, &id.to_be_bytes()).map_err(err)?;
                id
            }
        };
        let clean_previous = meta
            .get(RUNNING)
            .map_err(err)?
            .is_none_or(|v| v.as_ref() == [0]);
        meta.insert(RUNNING, &[1]).map_err(err)?;
        db.flush().map_err(err)?;
        let waiting = AtomicUsize::new(records.len());
        Ok((
            Journal {
                db,
                records,
                meta,
                journal_id,
                max_records: max_records.max(1),
                waiting,
                heartbeats_dropped: AtomicU64::new(0),
                path,
            },
            clean_previous,
        ))
    }

    /// The journal id and every record waiting in the journal in `dir`, without starting a
    /// run (for inspection while the agent is stopped).
    pub fn read_pending(dir: &Path) -> Result<(u64, Vec<JournalRecord>), JournalError> {
        let path = dir.to_path_buf();
        let err = |e: sled::Error| JournalError::Db {
            path: path.clone(),
            reason: e.to_string(),
        };
        if !dir.exists() {
            return Err(JournalError::Db {
                path,
                reason: "no journal here".into(),
            });
        }
        let db = sled::Config::new().path(dir).open().map_err(err)?;
        let journal_id = u64_value(
            db.open_tree("meta")
                .map_err(err)?
                .get(JOURNAL_ID)
                .map_err(err)?,
        )
        .unwrap_or(0);
        let mut records = Vec::new();
        for item in db.open_tree("records").map_err(err)?.iter() {
            let (_, value) = item.map_err(err)?;
            records.push(JournalRecord::decode(&mut value.as_ref()).map_err(|e| {
                JournalError::Corrupt {
                    path: path.clone(),
                    reason: e.to_string(),
                }
            })?);
        }
        Ok((journal_id, records))
    }

    fn db_error(&self, e: impl std::fmt::Display) -> JournalError {
        JournalError::Db {
            path: self.path.clone(),
            reason: e.to_string(),
        }
    }

    /// The id the server keys this journal's records by.
    pub fn journal_id(&self) -> u64 {
        self.journal_id
    }

    /// Records waiting for acknowledgement.
    pub fn len(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }

    /// Whether nothing waits for acknowledgement.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Writes `event` at `unix_ms` with the next sequence number and flushes. `None` when a
    /// heartbeat was left out because the journal is full (see the module's size policy).
    pub fn append(&self, unix_ms: u64, event: JournalEvent) -> Result<Option<u64>, JournalError> {
        let mut event = event;
        if event.is_heartbeat() && self.len() >= self.max_records {
            self.heartbeats_dropped.fetch_add(1, Ordering::Relaxed);
            return Ok(None);
        }
        if let JournalEvent::Heartbeat {
            heartbeats_dropped, ..
        } = &mut event
        {
            *heartbeats_dropped = self.heartbeats_dropped.swap(0, Ordering::Relaxed);
        }
        let result: Result<u64, TransactionError<()>> =
            (&self.records, &self.meta).transaction(|(records, meta)| {
                let seq = u64_value(meta.get(NEXT_SEQ)?).unwrap_or(1);
                let record = JournalRecord {
                    seq,
                    unix_ms,
                    event: event.clone(),
                };
                let mut bytes = Vec::with_capacity(record.encoded_len());
                record.encode(&mut bytes);
                records.insert(&seq.to_be_bytes(), bytes)?;
                meta.insert(NEXT_SEQ, &(seq + 1).to_be_bytes())?;
                Ok::<_, ConflictableTransactionError<()>>(seq)
            });
        let seq = result.map_err(|e| self.db_error(format!("{e:?}")))?;
        self.waiting.fetch_add(1, Ordering::Relaxed);
        self.db.flush().map_err(|e| self.db_error(e))?;
        // The event's name only: its fields (a link-down reason) would read like the log lines
        // that announced it. With `acknowledged up to` below, what a test waits for before it
        // reads the server's copy of the journal.
        tracing::debug!("journaled #{seq}: {}", event_name(&event));
        Ok(Some(seq))
    }

    /// Up to `limit` of the oldest records, as one batch (`None` when there are none).
    pub fn pending(&self, limit: usize) -> Result<Option<JournalBatch>, JournalError> {
        let mut records: Vec<JournalRecord> = Vec::new();
        for item in self
            .records
            .iter()
            .take(limit.clamp(1, JournalBatch::MAX_RECORDS))
        {
            let (_, value) = item.map_err(|e| self.db_error(e))?;
            let record =
                JournalRecord::decode(&mut value.as_ref()).map_err(|e| JournalError::Corrupt {
                    path: self.path.clone(),
                    reason: e.to_string(),
                })?;
            // Sequence numbers have no gaps; a batch is consecutive by definition.
            if records.last().is_some_and(|r| r.seq + 1 != record.seq) {
                break;
            }
            records.push(record);
        }
        Ok((!records.is_empty()).then_some(JournalBatch {
            journal_id: self.journal_id,
            records,
        }))
    }

    /// Deletes the acknowledged records and flushes; returns how many were deleted. An
    /// acknowledgement for another journal (a server confused by a reinstall) deletes nothing.
    pub fn acknowledge(&self, ack: &JournalAck) -> Result<usize, JournalError> {
        if ack.journal_id != self.journal_id {
            return Ok(0);
        }
        let mut batch = sled::Batch::default();
        let mut deleted = 0;
        for item in self
            .records
            .range(ack.first_seq.to_be_bytes()..=ack.last_seq.to_be_bytes())
            .keys()
        {
            batch.remove(item.map_err(|e| self.db_error(e))?);
            deleted += 1;
        }
        self.records
            .apply_batch(batch)
            .map_err(|e| self.db_error(e))?;
        self.waiting
            .fetch_sub(deleted.min(self.len()), Ordering::Relaxed);
        self.db.flush().map_err(|e| self.db_error(e))?;
        tracing::debug!(
            "journal acknowledged up to #{} ({deleted} deleted, {} waiting)",
            ack.last_seq,
            self.len()
        );
        Ok(deleted)
    }

    /// Ends a run cleanly: the stop is journaled and the next start will know.
    pub fn close(&self, unix_ms: u64) -> Result<(), JournalError> {
        self.append(unix_ms, JournalEvent::ProcessStop)?;
        self.meta
            .insert(RUNNING, &[0])
            .map_err(|e| self.db_error(e))?;
        self.db.flush().map_err(|e| self.db_error(e))?;
        Ok(())
    }
}

/// Milliseconds since the Unix epoch, now.
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Where producers (the link, the playout clock, the heartbeat) hand events over. Never
/// blocks: the playout clock must not wait for a disk.
#[derive(Debug, Clone)]
pub struct JournalSender {
    tx: SyncSender<(u64, JournalEvent)>,
}

impl JournalSender {
    /// Journals `event`, stamped now.
    pub fn record(&self, event: JournalEvent) {
        self.record_at(unix_ms(), event);
    }

    /// Journals `event` that happened at `unix_ms`, earlier than it could be known (a link
    /// found dead when its idle timer ran out, seconds after it went silent).
    pub fn record_at(&self, unix_ms: u64, event: JournalEvent) {
        match self.tx.try_send((unix_ms, event)) {
            Ok(()) => {}
            Err(TrySendError::Full((_, event))) => {
                tracing::error!("journal queue full: {event:?} not recorded");
            }
            // The writer is gone: the agent is stopping.
            Err(TrySendError::Disconnected(_)) => {}
        }
    }
}

/// The name of `event`'s variant (`LinkUp`, `ProgrammeEnd`, …), without its fields.
fn event_name(event: &JournalEvent) -> String {
    let shown = format!("{event:?}");
    shown
        .split(|c: char| !c.is_alphanumeric())
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// The thread that writes events to the journal, and wakes the uploader after each. It ends
/// once every [`JournalSender`] is gone.
pub fn spawn_writer(
    journal: Arc<Journal>,
    written: Arc<tokio::sync::Notify>,
) -> std::io::Result<(JournalSender, SupervisedThread<()>)> {
    let (tx, rx): (_, Receiver<(u64, JournalEvent)>) = sync_channel(QUEUE);
    let thread = spawn_thread("journal", "journal writer thread", move || {
        for (unix_ms, event) in rx {
            match journal.append(unix_ms, event) {
                Ok(Some(_)) => written.notify_one(),
                Ok(None) => {}
                Err(e) => tracing::error!("{e}"),
            }
        }
    })?;
    Ok((JournalSender { tx }, thread))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn heartbeat() -> JournalEvent {
        JournalEvent::Heartbeat {
            link_up: true,
            output: radio_proto::OutputState::OnAir,
            frames_received: 1,
            frames_played: 1,
            frames_lost: 0,
            heartbeats_dropped: 0,
        }
    }

    #[test]
    fn the_logged_name_of_an_event_has_none_of_its_fields() {
        let down = JournalEvent::LinkDown {
            reason: "connection lost: timed out".into(),
        };
        assert_eq!(event_name(&down), "LinkDown");
        assert_eq!(event_name(&JournalEvent::ProcessStop), "ProcessStop");
    }

    #[test]
    fn records_survive_until_acknowledged_and_numbers_never_repeat() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (journal, clean) = Journal::open(dir.path(), 1000).expect("open");
        assert!(clean, "a new journal has no unclean past");
        for i in 0..5 {
            journal
                .append(100 + i, JournalEvent::LinkUp { server_run: i })
                .expect("append");
        }
        let batch = journal.pending(3).expect("pending").expect("some");
        assert_eq!(
            batch.records.iter().map(|r| r.seq).collect::<Vec<_>>(),
            vec![1, 2, 3]
        );
        let ack = JournalAck {
            journal_id: batch.journal_id,
            first_seq: 1,
            last_seq: 3,
        };
        // Another journal's acknowledgement deletes nothing.
        let foreign = JournalAck {
            journal_id: batch.journal_id ^ 1,
            ..ack
        };
        assert_eq!(journal.acknowledge(&foreign).expect("ack"), 0);
        assert_eq!(journal.acknowledge(&ack).expect("ack"), 3);
        assert_eq!(journal.acknowledge(&ack).expect("again"), 0);
        let id = journal.journal_id();
        // A crash: no close. The next run knows, keeps the id, and numbers on.
        drop(journal);
        let (journal, clean) = Journal::open(dir.path(), 1000).expect("reopen");
        assert!(!clean, "the previous run did not close the journal");
        assert_eq!(journal.journal_id(), id);
        assert_eq!(
            journal
                .append(200, JournalEvent::ProcessStop)
                .expect("append"),
            Some(6)
        );
        let left: Vec<u64> = journal
            .pending(64)
            .expect("pending")
            .expect("some")
            .records
            .iter()
            .map(|r| r.seq)
            .collect();
        assert_eq!(left, vec![4, 5, 6]);
        journal.close(300).expect("close");
        drop(journal);
        let (_, clean) = Journal::open(dir.path(), 1000).expect("reopen");
        assert!(clean);
    }

    #[test]
    fn a_full_journal_drops_heartbeats_only_and_counts_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (journal, _) = Journal::open(dir.path(), 2).expect("open");
        assert!(journal.append(1, heartbeat()).expect("hb").is_some());
        assert!(journal.append(2, heartbeat()).expect("hb").is_some());
        assert_eq!(journal.append(3, heartbeat()).expect("hb"), None);
        assert_eq!(journal.append(4, heartbeat()).expect("hb"), None);
        // Transitions are kept whatever the size.
        assert_eq!(
            journal
                .append(5, JournalEvent::LinkDown { reason: "x".into() })
                .expect("t"),
            Some(3)
        );
        let batch = journal.pending(64).expect("pending").expect("some");
        journal
            .acknowledge(&JournalAck {
                journal_id: batch.journal_id,
                first_seq: 1,
                last_seq: 3,
            })
            .expect("ack");
        assert_eq!(journal.append(6, heartbeat()).expect("hb"), Some(4));
        let batch = journal.pending(64).expect("pending").expect("some");
        assert!(matches!(
            batch.records[0].event,
            JournalEvent::Heartbeat {
                heartbeats_dropped: 2,
                ..
            }
        ));
    }
}
