//! Ingest: audio that arrives from outside in real time — the district studio (live RTP, or PCM
//! from a local mixer's pipe), upstream stations (HTTP/Icecast streams, `relay.rs`; the
//! schedule's streams are checked ahead of their slots by `relay_probe.rs`) and upstream radio
//! servers over QUIC (`upstream.rs`). `webm_opus.rs` takes the Opus packets out of a browser's
//! live WebM recording, for the console's live broadcasts from browsers without WebCodecs.
//!
//! Every ingest delivers the same unit, a [`PcmFrame`] of 20 ms at 48 kHz mono, on a bounded
//! channel; the source runner (`crate::source`) paces, encodes once and fans out. Files are not
//! ingest: they are decoded at the pace of the clock by `crate::pipeline`.

/// Samples in one 20 ms frame at 48 kHz.
pub const FRAME_SAMPLES: usize = 960;

/// 20 ms of 48 kHz mono PCM, samples in -1.0..=1.0.
pub type PcmFrame = [f32; FRAME_SAMPLES];
pub mod live_rtp;
pub mod pcm_pipe;
pub mod relay;
pub mod relay_probe;
pub mod srtp;
pub mod stream_url;
pub mod upstream;
pub mod webm_opus;
