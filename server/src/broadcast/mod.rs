//! The broadcast path: what airs at each station, tick by tick.
//!
//! # Layout
//! - `on_air.rs` — [`on_air::OnAir`]: the 20 ms clock driving the router; all switching goes
//!   through its command channel, and the process ends if it dies.
//! - `live_input.rs` — the studio's live input (RTP or pipe), on air by itself while it sends.
//! - `console_live.rs` — [`console_live::ConsoleLive`]: going live from the console, one person
//!   at a time, through the same input as the studio's RTP.
//! - `playback.rs` — [`playback::Playback`]: one programme encoded once into 20 ms frames.
//! - `router.rs` — [`router::Router`]: each tick, one frame of every playback to the stations
//!   switched to it.
//! - `station_output.rs` — one station's unbroken stream: its own sequence numbers, programme
//!   markers at every switch, a bounded queue that drops a slow agent's oldest frames.
//! - `media_clock.rs` — the media clock frames are stamped on and clock probes answered from.

pub mod console_live;
pub mod live_input;
pub(crate) mod media_clock;
pub mod on_air;
pub mod playback;
pub mod router;
pub mod station_output;
