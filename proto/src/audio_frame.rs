//! `AudioFrame`: one Opus packet on an audio stream.

use bytes::{Buf, BufMut, Bytes};

use crate::codec::{decode_bytes, decode_u16, decode_u64, encode_bytes, prefixed_len};
use crate::{Decode, DecodeError, Encode};

/// One encoded Opus packet, normally 20 ms ([`crate::FRAME_SAMPLES`]).
///
/// Carries both a sequence number and a sample-clock timestamp: the sequence
/// detects loss, the timestamp lets the player conceal a gap with the right
/// amount of silence even when frame durations vary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioFrame {
    /// Which programme channel this audio belongs to.
    pub channel: u16,
    pub sequence: u64,
    /// Position of the first sample on the 48 kHz sample clock.
    pub timestamp: u64,
    /// The server's media clock ([`crate::MediaClock`]) at the tick that produced the frame,
    /// in microseconds. Every station's frame of one tick carries the same value, so agents
    /// that play each frame at this time plus one fixed delay play in step.
    pub server_time_us: u64,
    /// The Opus packet, 1..=[`AudioFrame::MAX_PAYLOAD`] bytes.
    pub payload: Bytes,
}

impl AudioFrame {
    /// An MTU's worth; real 20 ms Opus packets are far smaller, so anything
    /// bigger is a broken or hostile sender.
    pub const MAX_PAYLOAD: usize = 1500;
    /// Largest body a valid `AudioFrame` can have.
    pub const MAX_BODY_LEN: usize = 2 + 8 + 8 + 8 + prefixed_len(Self::MAX_PAYLOAD);
}

impl Encode for AudioFrame {
    fn encode<B: BufMut>(&self, buf: &mut B) {
        buf.put_u16(self.channel);
        buf.put_u64(self.sequence);
        buf.put_u64(self.timestamp);
        buf.put_u64(self.server_time_us);
        encode_bytes(buf, &self.payload);
    }

    fn encoded_len(&self) -> usize {
        2 + 8 + 8 + 8 + prefixed_len(self.payload.len())
    }
}

impl Decode for AudioFrame {
    fn decode<B: Buf>(buf: &mut B) -> Result<Self, DecodeError> {
        let channel = decode_u16(buf)?;
        let sequence = decode_u64(buf)?;
        let timestamp = decode_u64(buf)?;
        let server_time_us = decode_u64(buf)?;
        let payload = decode_bytes(buf, "payload", Self::MAX_PAYLOAD)?;
        // A zero-length Opus packet is not a valid packet (RFC 6716 §3.1);
        // silence is sent as a real DTX packet.
        if payload.is_empty() {
            return Err(DecodeError::Invalid {
                field: "payload",
                reason: "empty Opus packet".into(),
            });
        }
        Ok(AudioFrame {
            channel,
            sequence,
            timestamp,
            server_time_us,
            payload,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_body_len_is_tight() {
        let f = AudioFrame {
            channel: u16::MAX,
            sequence: u64::MAX,
            timestamp: u64::MAX,
            server_time_us: u64::MAX,
            payload: Bytes::from(vec![0xaa; AudioFrame::MAX_PAYLOAD]),
        };
        assert_eq!(f.encoded_len(), AudioFrame::MAX_BODY_LEN);
    }
}
