//! `Heartbeat`: periodic liveness and playout statistics.

use bytes::{Buf, BufMut};

use crate::codec::{decode_bool, decode_u64};
use crate::{Decode, DecodeError, Encode};

/// Sent by both sides every heartbeat interval once the session is established.
///
/// Doubles as the agent's status report so the server can show per-station
/// health without a separate request/response exchange. The server's own
/// heartbeats carry whatever counters it was given (normally zero).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heartbeat {
    /// Counts this side's heartbeats from 0, so gaps reveal lost or late ones.
    pub sequence: u64,
    /// Sender's wall clock, for rough clock-skew and latency display only.
    pub unix_ms: u64,
    pub frames_received: u64,
    pub frames_played: u64,
    pub frames_lost: u64,
    /// Whether the station's transmitter is currently fed by this agent.
    pub on_air: bool,
}

impl Heartbeat {
    /// Every `Heartbeat` body has this size.
    pub const MAX_BODY_LEN: usize = 5 * 8 + 1;
}

impl Encode for Heartbeat {
    fn encode<B: BufMut>(&self, buf: &mut B) {
        buf.put_u64(self.sequence);
        buf.put_u64(self.unix_ms);
        buf.put_u64(self.frames_received);
        buf.put_u64(self.frames_played);
        buf.put_u64(self.frames_lost);
        buf.put_u8(u8::from(self.on_air));
    }

    fn encoded_len(&self) -> usize {
        Self::MAX_BODY_LEN
    }
}

impl Decode for Heartbeat {
    fn decode<B: Buf>(buf: &mut B) -> Result<Self, DecodeError> {
        Ok(Heartbeat {
            sequence: decode_u64(buf)?,
            unix_ms: decode_u64(buf)?,
            frames_received: decode_u64(buf)?,
            frames_played: decode_u64(buf)?,
            frames_lost: decode_u64(buf)?,
            on_air: decode_bool(buf, "on_air")?,
        })
    }
}
