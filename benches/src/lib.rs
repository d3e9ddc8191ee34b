//! Benchmarks of the smart radio broadcast system. Timing goals live here, never in tests; results
//! are written to `BENCHMARKS.md` with the command that produced them.
//!
//! # Layout
//! - `benches/hot_path.rs` — criterion: wire encode/decode of an audio frame, Opus encoding of one
//!   20 ms frame, and routing one frame to 22 and 1,000 station outputs.
//! - `src/bin/emergency_latency.rs` — command to first emergency frame played at 22 real agents.
