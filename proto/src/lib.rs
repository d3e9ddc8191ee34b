//! Wire protocol of the smart radio broadcast system.
//!
//! The server streams Opus audio over QUIC to relay agents at commune radio
//! stations. This crate defines the bytes they exchange and the control
//! session state machine, and nothing else: it is sans-IO, in the style of
//! quinn-proto. Callers feed it bytes and the current [`std::time::Instant`]
//! and get back messages, events, bytes to send and deadlines, so the whole
//! protocol can be tested deterministically without sockets or a runtime.
//!
//! Every message travels in a frame: a one-byte [`MessageType`], the body
//! length as a QUIC varint, then the body. One bidirectional QUIC stream per
//! connection carries the control session ([`Session`]); audio streams carry
//! `ProgrammeStart`, `AudioFrame` and `ProgrammeEnd` frames read with
//! [`FrameReader`]. `docs/PROTOCOL.md` describes the wire format for humans.
//!
//! # Layout
//!
//! - `codec.rs` — the [`Encode`]/[`Decode`] traits and the primitive field
//!   codecs: QUIC varints, length-prefixed strings and bytes, fixed-width
//!   integers, booleans.
//! - `error.rs` — [`ErrorCode`] (wire close codes) and [`DecodeError`].
//! - `message.rs` — [`Message`], [`MessageType`] and the frame encoding.
//! - `hello.rs` — [`Hello`] and the [`Capabilities`] bit set.
//! - `welcome.rs` — [`Welcome`].
//! - `audio_frame.rs` — [`AudioFrame`].
//! - `heartbeat.rs` — [`Heartbeat`].
//! - `box_health.rs` — [`BoxHealth`]: the agent's box (temperature, disk, memory, load, uptime,
//!   clock sync, outputs, clusters), sent by agents announcing [`Capabilities::BOX_HEALTH`].
//! - `clock_probe.rs`, `clock_reply.rs` — [`ClockProbe`] and [`ClockReply`], the NTP-style
//!   exchange by which agents estimate the server's media clock.
//! - `media_clock.rs` — [`MediaClock`], the server's time base for frames and clock replies.
//! - `programme_start.rs` — [`ProgrammeStart`].
//! - `programme_end.rs` — [`ProgrammeEnd`].
//! - `error_message.rs` — [`ErrorMessage`], the `Error` message.
//! - `journal_batch.rs` — [`JournalBatch`] of [`JournalRecord`]s (the agent's uptime journal,
//!   also their on-disk form) and [`JournalEvent`].
//! - `journal_ack.rs` — [`JournalAck`], the server's "stored durably".
//! - `prefetch_manifest.rs` — [`PrefetchManifest`] of [`PrefetchItem`]s: the recordings a station
//!   will air within the server's horizon.
//! - `prefetch_chunk.rs` — [`PrefetchChunk`], a piece of a prefetched blob.
//! - `prefetch_blob.rs` — the blob format: length-prefixed Opus packets ([`blob_packets`]).
//! - `reader.rs` — [`FrameReader`], incremental framing over a byte stream.
//! - `session.rs` — [`Session`], the control-stream state machine, with
//!   [`SessionConfig`], [`SessionState`] and [`Event`].
//!
//! Integration tests live in `tests/`: `roundtrip.rs` (property tests,
//! including arbitrary and mutated input), `limits.rs` (size limits),
//! `wire_values.rs` (pinned wire numbers) and `session.rs`, which runs an
//! agent/server pair on a virtual clock using `util/mod.rs`. The cargo-fuzz
//! target is `fuzz/fuzz_targets/proto_decode.rs` at the repository root.

mod audio_frame;
mod box_health;
mod clock_probe;
mod clock_reply;
pub mod codec;
mod error;
mod error_message;
mod heartbeat;
mod hello;
mod journal_ack;
mod journal_batch;
mod media_clock;
mod message;
mod prefetch_blob;
mod prefetch_chunk;
mod prefetch_manifest;
mod programme_end;
mod programme_start;
mod reader;
mod session;
mod welcome;

pub use audio_frame::AudioFrame;
pub use box_health::{BoxHealth, ClusterHealth, OutputHealth, SinkHealth};
pub use clock_probe::ClockProbe;
pub use clock_reply::ClockReply;
pub use codec::{Decode, Encode};
pub use error::{DecodeError, ErrorCode};
pub use error_message::ErrorMessage;
pub use heartbeat::Heartbeat;
pub use hello::{Capabilities, Hello};
pub use journal_ack::JournalAck;
pub use journal_batch::{ClusterState, JournalBatch, JournalEvent, JournalRecord, OutputState};
pub use media_clock::MediaClock;
pub use message::{Message, MessageType};
pub use prefetch_blob::{blob_packets, put_blob_packet};
pub use prefetch_chunk::{PrefetchChunk, PREFETCH_STOP_HELD, PREFETCH_STOP_RETRY};
pub use prefetch_manifest::{BlobDigest, PrefetchItem, PrefetchManifest};
pub use programme_end::ProgrammeEnd;
pub use programme_start::{ProgrammeLevel, ProgrammeStart};
pub use reader::FrameReader;
pub use session::{Event, Session, SessionConfig, SessionState};
pub use welcome::Welcome;

/// Bumped on any incompatible wire change; checked in `Hello` and `Welcome`.
pub const PROTOCOL_VERSION: u16 = 1;
/// QUIC ALPN identifier; the version suffix lets TLS refuse a mismatched peer
/// before any of our own bytes are exchanged.
pub const ALPN: &[u8] = b"truyen-thanh/1";
/// Opus' native rate; timestamps in [`AudioFrame`] count samples at this rate.
pub const SAMPLE_RATE: u32 = 48_000;
/// 20 ms at 48 kHz: Opus' default frame, a balance of latency and overhead.
pub const FRAME_SAMPLES: u32 = 960;
/// Absolute cap on any encoded message; per-type limits
/// ([`MessageType::max_body_len`]) are far tighter.
pub const MAX_FRAME_SIZE: usize = 64 * 1024;
