//! The district's uptime records, in the server's store: every agent's journal as uploaded
//! (proof of play, link and output state, heartbeats) and the server's own view of each
//! agent's connection. Reports (`report/`) read both: the agent says what the station did,
//! the server says when it could reach it, and together they tell "station off or power cut"
//! (no agent records, no connection) from "link down" (the agent ran, the server could not
//! reach it) from "on air".
//!
//! # Lossless, never twice
//! A record is stored under (agent, journal id, sequence): uploading the same batch again —
//! the agent did not see the acknowledgement — writes the same keys, so nothing is counted
//! twice. [`UptimeJournal::store_batch`] returns only after the records are flushed to disk,
//! and only then does the server acknowledge, and only then does the agent delete them: a power
//! cut at any point loses nothing.
//!
//! # Server runs
//! Every link event names the server run (`Welcome::session_id`, [`ServerRun`]) that saw it,
//! and each run keeps one record of its start and of the last moment it was known alive
//! (overwritten every [`SERVER_ALIVE_INTERVAL`]). A server that crashed (SIGKILL, power cut)
//! never writes the end of its sessions; a later run's start marker shows the earlier run is
//! over, and its alive time bounds when its sessions ended (`report/timeline.rs`).

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Buf;
use radio_proto::{Decode, Encode, JournalAck, JournalBatch, JournalRecord};

use crate::records::store::StoreError;

/// Tree of the agents' records: `agent \0 journal_id(8, BE) seq(8, BE)` → the encoded record.
const RECORDS_TREE: &str = "uptime-records";
/// Tree of the server's view: `agent \0 id(8, BE)` → a [`LinkEvent`] as `unix_ms(8, BE)
/// flags(1) [server_run(8, BE) if LINK_HAS_RUN] reason(UTF-8)`. The id is a sled id, so the
/// events are in the order they were written, across runs.
const LINKS_TREE: &str = "uptime-links";
/// Tree of each agent's watched-cluster states: `agent` → a snapshot
/// (`crate::records::clusters::WatchedClusters::to_bytes`), rewritten when they change.
const CLUSTERS_TREE: &str = "uptime-clusters";
/// Tree of the server's runs: `order(8, BE)` → `run_id(8) started_ms(8) alive_ms(8)`, all BE.
/// The order is a sled id, increasing across restarts, so a clock stepping back cannot
/// reorder runs.
const RUNS_TREE: &str = "uptime-runs";

/// How often a running server overwrites its run's alive time: how late, at most, the report
/// learns that a crashed server's sessions were over (the same order as the agents'
/// heartbeats, so a crash is known to a minute like a power cut at a station).
pub const SERVER_ALIVE_INTERVAL: Duration = Duration::from_secs(60);

/// Flag bits of a stored link event's fifth byte. Events stored before runs were recorded have
/// only `LINK_UP` (0 or 1) and no run id.
const LINK_UP: u8 = 1;
const LINK_HAS_RUN: u8 = 2;

/// The server's own observation of one agent's connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkEvent {
    /// The server's wall clock, milliseconds since the Unix epoch.
    pub unix_ms: u64,
    /// A session was established (true) or ended (false).
    pub up: bool,
    /// Why it ended (empty when up).
    pub reason: String,
    /// The server run that saw it (`None` for an event stored before runs were recorded).
    pub server_run: Option<u64>,
}

/// One run of the server process, from its start marker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerRun {
    /// The run's id (`Welcome::session_id`, `LinkEvent::server_run`).
    pub run_id: u64,
    /// When it started, the server's wall clock, Unix milliseconds.
    pub started_ms: u64,
    /// The last time it recorded itself alive (its start, at first).
    pub alive_ms: u64,
}

/// This process's run record, to mark it alive ([`UptimeJournal::record_alive`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunMarker {
    order: u64,
    run: ServerRun,
}

/// One stored agent record, with the journal it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRecord {
    pub journal_id: u64,
    pub record: JournalRecord,
}

/// The uptime trees of a [`crate::records::store::Store`].
#[derive(Debug, Clone)]
pub struct UptimeJournal {
    db: sled::Db,
    records: sled::Tree,
    links: sled::Tree,
    clusters: sled::Tree,
    runs: sled::Tree,
    path: PathBuf,
    /// Flushes shared by concurrent writers (`group_commit.rs`).
    group: std::sync::Arc<crate::records::group_commit::GroupCommit>,
    gate: crate::records::write_gate::WriteGate,
}

fn agent_prefix(agent: &str) -> Vec<u8> {
    let mut key = agent.as_bytes().to_vec();
    key.push(0);
    key
}

impl UptimeJournal {
    pub(crate) fn open(db: &sled::Db, path: PathBuf) -> Result<Self, StoreError> {
        let open = |name: &str| {
            db.open_tree(name).map_err(|e| StoreError::Db {
                path: path.clone(),
                reason: e.to_string(),
            })
        };
        Ok(UptimeJournal {
            db: db.clone(),
            records: open(RECORDS_TREE)?,
            links: open(LINKS_TREE)?,
            clusters: open(CLUSTERS_TREE)?,
            runs: open(RUNS_TREE)?,
            path: path.clone(),
            group: Default::default(),
            gate: Default::default(),
        })
    }

    /// Writes pass `gate` (the store's, see `write_gate.rs`).
    pub(crate) fn gated(mut self, gate: crate::records::write_gate::WriteGate) -> Self {
        self.gate = gate;
        self
    }

    fn db_error(&self, e: impl std::fmt::Display) -> StoreError {
        StoreError::Db {
            path: self.path.clone(),
            reason: e.to_string(),
        }
    }

    /// Stores `batch` from `agent` and flushes; the acknowledgement to send once it returns.
    /// Blocking (it waits for the disk): call it off the async runtime's threads.
    pub fn store_batch(&self, agent: &str, batch: &JournalBatch) -> Result<JournalAck, StoreError> {
        let (Some(first), Some(last)) = (batch.records.first(), batch.records.last()) else {
            return Err(self.db_error("empty journal batch"));
        };
        let mut writes = sled::Batch::default();
        for record in &batch.records {
            let mut key = agent_prefix(agent);
            key.extend_from_slice(&batch.journal_id.to_be_bytes());
            key.extend_from_slice(&record.seq.to_be_bytes());
            let mut value = Vec::with_capacity(record.encoded_len());
            record.encode(&mut value);
            writes.insert(key, value);
        }
        {
            let _gate = self.gate.enter();
            self.records
                .apply_batch(writes)
                .map_err(|e| self.db_error(e))?;
        }
        self.flush()?;
        Ok(JournalAck {
            journal_id: batch.journal_id,
            first_seq: first.seq,
            last_seq: last.seq,
        })
    }

    /// Records what the server saw of `agent`'s connection, durably. Blocking.
    pub fn record_link(&self, agent: &str, event: &LinkEvent) -> Result<(), StoreError> {
        let gate = self.gate.enter();
        let id = self.db.generate_id().map_err(|e| self.db_error(e))?;
        let mut key = agent_prefix(agent);
        key.extend_from_slice(&id.to_be_bytes());
        let mut value = Vec::with_capacity(17 + event.reason.len());
        value.extend_from_slice(&event.unix_ms.to_be_bytes());
        let mut flags = if event.up { LINK_UP } else { 0 };
        if event.server_run.is_some() {
            flags |= LINK_HAS_RUN;
        }
        value.push(flags);
        if let Some(run) = event.server_run {
            value.extend_from_slice(&run.to_be_bytes());
        }
        value.extend_from_slice(event.reason.as_bytes());
        self.links
            .insert(key, value)
            .map_err(|e| self.db_error(e))?;
        drop(gate);
        self.flush()
    }

    /// Makes what this thread wrote durable, sharing the disk sync with concurrent writers.
    fn flush(&self) -> Result<(), StoreError> {
        self.group
            .commit(|| self.db.flush().map(drop))
            .map_err(|e| self.db_error(e))
    }

    /// Every record `agent` uploaded, by journal then sequence.
    pub fn records(&self, agent: &str) -> Result<Vec<StoredRecord>, StoreError> {
        let prefix = agent_prefix(agent);
        let mut out = Vec::new();
        for item in self.records.scan_prefix(&prefix) {
            let (key, value) = item.map_err(|e| self.db_error(e))?;
            let mut id = key.get(prefix.len()..prefix.len() + 8).unwrap_or_default();
            if id.len() != 8 {
                return Err(self.corrupt(format!("record key of `{agent}` too short")));
            }
            let journal_id = id.get_u64();
            let record = JournalRecord::decode(&mut value.as_ref())
                .map_err(|e| self.corrupt(format!("record of `{agent}`: {e}")))?;
            out.push(StoredRecord { journal_id, record });
        }
        Ok(out)
    }

    /// The journals `agent` uploaded records from (more than one after a reinstall), by id —
    /// not by time. Skips from journal to journal without reading their records.
    pub fn journal_ids(&self, agent: &str) -> Result<Vec<u64>, StoreError> {
        let prefix = agent_prefix(agent);
        let mut ids = Vec::new();
        let mut from = prefix.clone();
        loop {
            let Some(item) = self.records.range(from.as_slice()..).keys().next() else {
                break;
            };
            let key = item.map_err(|e| self.db_error(e))?;
            if !key.starts_with(&prefix) {
                break;
            }
            let mut id = key.get(prefix.len()..prefix.len() + 8).unwrap_or_default();
            if id.len() != 8 {
                return Err(self.corrupt(format!("record key of `{agent}` too short")));
            }
            let journal_id = id.get_u64();
            ids.push(journal_id);
            let Some(next) = journal_id.checked_add(1) else {
                break;
            };
            from.truncate(prefix.len());
            from.extend_from_slice(&next.to_be_bytes());
        }
        Ok(ids)
    }

    /// `agent`'s records from journal `journal_id`, in sequence order, read from disk as the
    /// iterator is advanced (five years of minute heartbeats do not fit in memory at once).
    pub fn journal_records<'a>(
        &'a self,
        agent: &str,
        journal_id: u64,
    ) -> impl Iterator<Item = Result<JournalRecord, StoreError>> + 'a {
        let mut prefix = agent_prefix(agent);
        prefix.extend_from_slice(&journal_id.to_be_bytes());
        let agent = agent.to_owned();
        self.records.scan_prefix(prefix).values().map(move |item| {
            let value = item.map_err(|e| self.db_error(e))?;
            JournalRecord::decode(&mut value.as_ref())
                .map_err(|e| self.corrupt(format!("record of `{agent}`: {e}")))
        })
    }

    /// Keeps `agent`'s watched-cluster snapshot (not flushed: the records it comes from are,
    /// and a snapshot lost in a crash only shows those clusters as following their station
    /// until they next change).
    pub fn save_clusters(&self, agent: &str, snapshot: &[u8]) -> Result<(), StoreError> {
        let _gate = self.gate.enter();
        self.clusters
            .insert(agent.as_bytes(), snapshot)
            .map(|_| ())
            .map_err(|e| self.db_error(e))
    }

    /// Every agent's watched-cluster snapshot.
    pub fn saved_clusters(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let mut out = Vec::new();
        for item in self.clusters.iter() {
            let (key, value) = item.map_err(|e| self.db_error(e))?;
            out.push((String::from_utf8_lossy(&key).into_owned(), value.to_vec()));
        }
        Ok(out)
    }

    /// What the server saw of `agent`'s connection, oldest first.
    pub fn links(&self, agent: &str) -> Result<Vec<LinkEvent>, StoreError> {
        let mut out = Vec::new();
        for item in self.links.scan_prefix(agent_prefix(agent)) {
            let (_, value) = item.map_err(|e| self.db_error(e))?;
            if value.len() < 9 {
                return Err(self.corrupt(format!("link event of `{agent}` too short")));
            }
            let mut rest = value.as_ref();
            let unix_ms = rest.get_u64();
            let flags = rest.get_u8();
            let server_run = if flags & LINK_HAS_RUN != 0 {
                if rest.len() < 8 {
                    return Err(self.corrupt(format!("link event of `{agent}` too short")));
                }
                Some(rest.get_u64())
            } else {
                None
            };
            out.push(LinkEvent {
                unix_ms,
                up: flags & LINK_UP != 0,
                reason: String::from_utf8_lossy(rest).into_owned(),
                server_run,
            });
        }
        Ok(out)
    }

    /// Records the start of this server run, durably, before it accepts any agent. Blocking.
    pub fn start_run(&self, run_id: u64, unix_ms: u64) -> Result<RunMarker, StoreError> {
        let order = {
            let _gate = self.gate.enter();
            self.db.generate_id().map_err(|e| self.db_error(e))?
        };
        let marker = RunMarker {
            order,
            run: ServerRun {
                run_id,
                started_ms: unix_ms,
                alive_ms: unix_ms,
            },
        };
        self.write_run(&marker)?;
        self.flush()?;
        Ok(marker)
    }

    /// Overwrites the run's alive time with `unix_ms` (never moving it back). Not flushed: sled
    /// writes it out within half a second, and a crash in between only makes the report take
    /// the run to have ended one interval earlier. Blocking, briefly.
    pub fn record_alive(&self, marker: &mut RunMarker, unix_ms: u64) -> Result<(), StoreError> {
        marker.run.alive_ms = marker.run.alive_ms.max(unix_ms);
        self.write_run(marker)
    }

    /// [`UptimeJournal::record_alive`] at a clean stop, flushed: the run's last sign of life
    /// is then its stop. Blocking.
    pub fn record_stop(&self, marker: &mut RunMarker, unix_ms: u64) -> Result<(), StoreError> {
        self.record_alive(marker, unix_ms)?;
        self.flush()
    }

    fn write_run(&self, marker: &RunMarker) -> Result<(), StoreError> {
        let mut value = Vec::with_capacity(24);
        value.extend_from_slice(&marker.run.run_id.to_be_bytes());
        value.extend_from_slice(&marker.run.started_ms.to_be_bytes());
        value.extend_from_slice(&marker.run.alive_ms.to_be_bytes());
        let _gate = self.gate.enter();
        self.runs
            .insert(marker.order.to_be_bytes(), value)
            .map_err(|e| self.db_error(e))?;
        Ok(())
    }

    /// Every server run recorded, in the order they started (the last is the newest: while
    /// the server runs, itself).
    pub fn runs(&self) -> Result<Vec<ServerRun>, StoreError> {
        let mut out = Vec::new();
        for item in self.runs.iter().values() {
            let value = item.map_err(|e| self.db_error(e))?;
            if value.len() < 24 {
                return Err(self.corrupt("server run record too short".to_owned()));
            }
            let mut value = value.as_ref();
            out.push(ServerRun {
                run_id: value.get_u64(),
                started_ms: value.get_u64(),
                alive_ms: value.get_u64(),
            });
        }
        Ok(out)
    }

    /// Agents with any record or link event.
    pub fn agents(&self) -> Result<BTreeSet<String>, StoreError> {
        let mut agents = BTreeSet::new();
        for tree in [&self.records, &self.links] {
            for item in tree.iter().keys() {
                let key = item.map_err(|e| self.db_error(e))?;
                if let Some(end) = key.iter().position(|b| *b == 0) {
                    agents.insert(String::from_utf8_lossy(&key[..end]).into_owned());
                }
            }
        }
        Ok(agents)
    }

    fn corrupt(&self, reason: String) -> StoreError {
        StoreError::Corrupt {
            path: self.path.clone(),
            what: "uptime journal",
            reason,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use radio_proto::JournalEvent;

    fn batch(journal_id: u64, seqs: std::ops::RangeInclusive<u64>) -> JournalBatch {
        JournalBatch {
            journal_id,
            records: seqs
                .map(|seq| JournalRecord {
                    seq,
                    unix_ms: 1_000 * seq,
                    event: JournalEvent::LinkUp { server_run: seq },
                })
                .collect(),
        }
    }

    #[test]
    fn batches_are_stored_once_per_journal_and_sequence() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = crate::records::store::Store::open(dir.path()).expect("store");
        let journal = store.uptime();
        let ack = journal
            .store_batch("binh-trung", &batch(7, 1..=3))
            .expect("store");
        assert_eq!((ack.journal_id, ack.first_seq, ack.last_seq), (7, 1, 3));
        // The same batch again (a lost acknowledgement), then an overlapping one.
        journal
            .store_batch("binh-trung", &batch(7, 1..=3))
            .expect("again");
        journal
            .store_batch("binh-trung", &batch(7, 3..=5))
            .expect("overlap");
        // A reinstalled agent starts a new journal at 1: kept apart, not overwriting.
        journal
            .store_batch("binh-trung", &batch(8, 1..=2))
            .expect("new journal");
        journal
            .store_batch("binh-duong", &batch(7, 1..=1))
            .expect("other agent");
        let records = journal.records("binh-trung").expect("records");
        let keys: Vec<(u64, u64)> = records
            .iter()
            .map(|r| (r.journal_id, r.record.seq))
            .collect();
        assert_eq!(
            keys,
            vec![(7, 1), (7, 2), (7, 3), (7, 4), (7, 5), (8, 1), (8, 2)]
        );
        journal
            .record_link(
                "binh-trung",
                &LinkEvent {
                    unix_ms: 5,
                    up: false,
                    reason: "mất kết nối".into(),
                    server_run: Some(42),
                },
            )
            .expect("link");
        assert_eq!(
            journal.agents().expect("agents"),
            BTreeSet::from(["binh-duong".to_owned(), "binh-trung".to_owned()])
        );
        drop(store);
        // Durable: a new process sees the same.
        let store = crate::records::store::Store::open(dir.path()).expect("reopen");
        assert_eq!(
            store.uptime().records("binh-trung").expect("records").len(),
            7
        );
        assert_eq!(
            store.uptime().links("binh-trung").expect("links"),
            vec![LinkEvent {
                unix_ms: 5,
                up: false,
                reason: "mất kết nối".into(),
                server_run: Some(42),
            }]
        );
    }

    #[test]
    fn link_events_stored_before_runs_were_recorded_still_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = crate::records::store::Store::open(dir.path()).expect("store");
        let journal = store.uptime();
        // The old form: time, up (0 or 1), reason.
        let mut old = 7u64.to_be_bytes().to_vec();
        old.push(1);
        let mut key = agent_prefix("binh-trung");
        let id = journal.db.generate_id().expect("id");
        key.extend_from_slice(&id.to_be_bytes());
        journal.links.insert(key, old).expect("insert");
        let new = LinkEvent {
            unix_ms: 9,
            up: true,
            reason: String::new(),
            server_run: Some(u64::MAX),
        };
        journal.record_link("binh-trung", &new).expect("link");
        assert_eq!(
            journal.links("binh-trung").expect("links"),
            vec![
                LinkEvent {
                    unix_ms: 7,
                    up: true,
                    reason: String::new(),
                    server_run: None,
                },
                new
            ]
        );
    }

    #[test]
    fn runs_are_listed_in_start_order_with_their_last_alive_time() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = crate::records::store::Store::open(dir.path()).expect("store");
        let journal = store.uptime();
        let mut first = journal.start_run(900, 1_000).expect("start");
        journal.record_alive(&mut first, 61_000).expect("alive");
        // A clock stepping back does not move the alive time back.
        journal.record_alive(&mut first, 50_000).expect("alive");
        drop(store);
        let store = crate::records::store::Store::open(dir.path()).expect("reopen");
        // The next run's clock is behind the first's: still listed after it.
        store.uptime().start_run(3, 500).expect("start");
        assert_eq!(
            store.uptime().runs().expect("runs"),
            vec![
                ServerRun {
                    run_id: 900,
                    started_ms: 1_000,
                    alive_ms: 61_000,
                },
                ServerRun {
                    run_id: 3,
                    started_ms: 500,
                    alive_ms: 500,
                },
            ]
        );
    }
}
