//! The audio frame the benchmarks send: what one 20 ms tick of one programme puts on the wire.

use bytes::Bytes;
use radio_proto::{AudioFrame, Message};

/// Frame `sequence` of a 32 kb/s voice programme: 80 bytes of Opus (32 kb/s × 20 ms).
pub fn voice_frame(sequence: u64) -> Message {
    Message::AudioFrame(AudioFrame {
        channel: 0,
        sequence,
        timestamp: sequence * 960,
        server_time_us: sequence * 20_000,
        payload: Bytes::from(vec![0x5a; 80]),
    })
}
