//! What must not be lost: the durable store, the agents' uptime journals and the server's view
//! of their links, and the loudspeaker clusters' last known state.
//!
//! # Layout
//! - `store.rs` — [`store::Store`] (sled): the schedule, the admin token's hash, the audit log
//!   and the journals, durable.
//! - `uptime_journal.rs` — the agents' uploaded journals, stored once per record and flushed
//!   before the acknowledgement.
//! - `group_commit.rs` — concurrent journal writers share one disk flush.
//! - `clusters.rs` — what each agent's journal last said of the clusters it watches.
//! - `box_health.rs` — each station's box health per month (worst temperature, time over the
//!   threshold), for the station report.
//! - `write_gate.rs` — every store write passes it; a backup closes it to copy the trees at
//!   one moment (`backup/`).

pub mod box_health;
pub mod clusters;
pub(crate) mod group_commit;
pub mod store;
pub(crate) mod uptime_journal;
pub mod write_gate;
