//! Prefetch: recordings scheduled within the horizon are sent to each agent ahead of time, so a
//! station airs them through a link outage.
//!
//! # Layout
//! - `planner.rs` — [`PrefetchPlanner`]: per station, the recordings scheduled within the
//!   prefetch horizon, each encoded once into a blob, kept current with the schedule.
//! - `sender.rs` — an agent's prefetch streams: its manifest, then the blobs it lacks, paced and
//!   below the audio's priority.

pub(crate) mod planner;
pub(crate) mod sender;

pub use planner::PrefetchPlanner;
