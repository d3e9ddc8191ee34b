//! Benchmarks of the smart radio broadcast system. Timing goals live here, never in tests; results
//! are written to `BENCHMARKS.md` with the command that produced them.
//!
//! # Layout
//! - `benches/hot_path.rs` — criterion: wire encode/decode of an audio frame, Opus encoding of one
//!   20 ms frame, and routing one frame to 22, 1,000 and 10,000 station outputs.
//! - `benches/quic_fanout.rs` — criterion: one frame written to N real QUIC connections (mutual
//!   TLS) until every agent has read it.
//! - `benches/journal.rs` — criterion: the server storing a journal batch, the agent appending a
//!   record and applying an acknowledgement, on disk.
//! - `src/bin/transcode_compare.rs` — the server's pipeline against `ffmpeg -c:a libopus`.
//! - `src/bin/live_latency.rs` — live studio RTP in at the server to RTP out at a real agent.
//! - `src/bin/browser_live_latency.rs` — live from the console in headless Chromium: the page's
//!   microphone to a real agent's output, beside the studio's RTP input in the same run.
//! - `src/live_latency.rs` — what the two share: the burst signal, onsets, RTP decoding and
//!   capture, the paced studio sender, pairing.
//! - `src/summary.rs` — medians, percentiles and `--flag VALUE` arguments for the binaries.
//! - `src/voice_frame.rs` — the 80-byte Opus frame the benchmarks send.
//! - `src/bin/radio_bench.rs` (`radio-bench`) — the load harness: the real server, N simulated
//!   agents and one real agent; JSON of frames, latency, CPU and memory.
//! - `src/simulated_agent.rs` — the harness's agent: real QUIC, TLS and protocol, no decoding.
//! - `src/load_district.rs` — a district of N stations, each enrolled with the district CA.
//! - `src/latency_histogram.rs` — lock-free latency buckets that thousands of agents fill.
//! - `src/bin/emergency_latency.rs` — command to first emergency frame played at 22 real agents.
//! - `src/bin/outage_recovery.rs` — audio back after a 30 s blackhole, and the journaled outage.
//! - `src/bin/loss_resilience.rs` — live frames played at 0–20 % loss, jitter and bursts.
//! - `src/bin/opus_fec.rs` — Opus in-band FEC against concealment on real speech, offline.
//! - `src/bin/flapping.rs` — a thunderstorm day of outages in accelerated time.
//! - `src/bin/playout_spread.rs` — how far apart agents play the same frame.

pub mod latency_histogram;
pub mod live_latency;
pub mod load_district;
pub mod simulated_agent;
pub mod summary;
pub mod voice_frame;
