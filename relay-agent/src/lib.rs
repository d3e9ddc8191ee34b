//! The relay agent: an unattended daemon at a commune radio station. It holds a QUIC connection to
//! the district server (mutual TLS, identity from its enrolment bundle), receives Opus frames,
//! reorders them in a jitter buffer and plays them out on a steady 20 ms clock to the station's
//! loudspeaker clusters through its sinks: RTP to IP speaker receivers, a WAV file, or a pipe into
//! a sound card or FM transmitter.
//!
//! # Layout
//! - `agent.rs` — [`Agent`]: builds everything from the config and runs until shutdown.
//! - `amplifier/` — amplifier power: the policy (lead, idle, emergencies; sans-IO), the GPIO
//!   and command switches, and the thread that drives them and journals each switch.
//! - `cached_airing.rs` — per slot, whether the stream or a prefetched recording airs (sans-IO).
//! - `bundle.rs` — the enrolment bundle (certificates, key, server address) and private file writes.
//! - `enroll.rs` — `relay-agent enroll --bundle FILE`: the bundle checked, put in place for the
//!   service's user only, and the service (re)started.
//! - `manual.rs` — man pages and shell completions generated from a binary's command line, for
//!   the packages (shared with the server).
//! - `tls.rs` — the agent's side of mutual TLS and the QUIC transport settings.
//! - `connection.rs` — connect, control session, audio streams, reconnect loop.
//! - `reconnect.rs` — exponential backoff with jitter and the stability threshold.
//! - `jitter_buffer.rs` — reorders frames by sequence number, drops late and duplicate ones.
//! - `clock_sync.rs` — the server's media clock estimated from NTP-style probes (offset, drift),
//!   so that every agent plays each frame at its server time plus one delay.
//! - `playout.rs` — the 20 ms playout clock: what plays in each slot, proof-of-play accounting,
//!   Opus decoding and concealment.
//! - `retime.rs` — stretches or squeezes decoded PCM by a sample or two while the playout clock
//!   slews, so WAV and pipe outputs keep the synchronised timeline.
//! - `journal.rs` — the uptime journal (sled): numbered, timed records kept until the server
//!   acknowledges them; the writer thread that producers hand events to.
//! - `proof_of_play.rs` — programme runs and output state (on air, silent, underrun) from the
//!   playout's slots, as journal events.
//! - `prefetch_cache.rs` — the on-disk cache of prefetched recordings: size-bounded, checksummed,
//!   written aside and renamed, with the server's latest manifest.
//! - `prefetch_receiver.rs` — the prefetch streams (manifests, one stream per blob) into the cache.
//! - `prefetch_loader.rs` — reads prefetched recordings back and checks them before their slots.
//! - `process.rs` — logging set-up, the one-line panic report and the SIGTERM/Ctrl-C shutdown
//!   signal, shared with the server.
//! - `supervise.rs` — the agent's threads and tasks watched: one that dies ends the agent, so
//!   the service manager restarts it instead of leaving a station that looks alive and airs
//!   nothing.
//! - `service_manager.rs` — systemd told when the daemon is ready and stopping, and a watchdog
//!   fed by the work's own progress (the playout's slots; the server's on-air tick), so a hang
//!   is restarted like a crash; shared with the server.
//! - `test_panic.rs` — debug builds only: a panic injected into a thread for the end-to-end
//!   test of that supervision.
//! - `cluster_health.rs` — whether a loudspeaker cluster fed over RTP hears the station, from
//!   its RTCP receiver reports and ICMP errors.
//! - `box_health/` — the box's health for the server (`parse.rs`: the kernel files' text, sans-IO;
//!   `mod.rs`: reading them, with roots movable for tests by `RADIO_BOX_HEALTH_ROOT`).
//! - `sink/` — the outputs: `rtp.rs` (RFC 7587) with `sdp.rs` and `rtcp.rs` (receiver reports
//!   in, sender reports out), `wav.rs`, `pipe.rs`.

pub mod agent;
pub mod amplifier;
pub mod box_health;
pub mod bundle;
pub mod cached_airing;
pub mod clock_sync;
pub mod cluster_health;
pub mod connection;
pub mod enroll;
pub mod jitter_buffer;
pub mod journal;
pub mod manual;
pub mod playout;
pub mod prefetch_cache;
pub mod prefetch_loader;
pub(crate) mod prefetch_receiver;
pub mod process;
pub mod proof_of_play;
pub mod reconnect;
pub mod retime;
pub mod service_manager;
pub mod sink;
pub mod supervise;
#[cfg(debug_assertions)]
pub(crate) mod test_panic;
pub mod tls;

pub use agent::{Agent, AgentError, AgentReport, AgentStatus};
pub use bundle::Bundle;
