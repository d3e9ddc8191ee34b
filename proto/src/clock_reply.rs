//! `ClockReply`: the server's answer to a `ClockProbe`.

use bytes::{Buf, BufMut};

use crate::codec::{decode_u32, decode_u64};
use crate::{Decode, DecodeError, Encode};

/// Second half of an NTP-style exchange. With t1 = `agent_send_us`, t2 = `server_receive_us`,
/// t3 = `server_send_us` and t4 the agent's receive time, the server's media clock is ahead of
/// the agent's by `((t2 - t1) + (t3 - t4)) / 2`, give or take half the asymmetry of the path,
/// and the round trip is `(t4 - t1) - (t3 - t2)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClockReply {
    /// The probe's id.
    pub id: u32,
    /// The probe's `agent_send_us` (t1), echoed.
    pub agent_send_us: u64,
    /// Server media clock ([`crate::MediaClock`]) when the probe arrived (t2).
    pub server_receive_us: u64,
    /// Server media clock when the reply left (t3), never before t2.
    pub server_send_us: u64,
}

impl ClockReply {
    /// Every `ClockReply` body has this size.
    pub const MAX_BODY_LEN: usize = 4 + 3 * 8;
}

impl Encode for ClockReply {
    fn encode<B: BufMut>(&self, buf: &mut B) {
        buf.put_u32(self.id);
        buf.put_u64(self.agent_send_us);
        buf.put_u64(self.server_receive_us);
        buf.put_u64(self.server_send_us);
    }

    fn encoded_len(&self) -> usize {
        Self::MAX_BODY_LEN
    }
}

impl Decode for ClockReply {
    fn decode<B: Buf>(buf: &mut B) -> Result<Self, DecodeError> {
        let reply = ClockReply {
            id: decode_u32(buf)?,
            agent_send_us: decode_u64(buf)?,
            server_receive_us: decode_u64(buf)?,
            server_send_us: decode_u64(buf)?,
        };
        // A reply leaving before its probe arrived would give a round trip longer than the
        // one measured, and a wrong offset: no honest server sends one.
        if reply.server_send_us < reply.server_receive_us {
            return Err(DecodeError::Invalid {
                field: "server_send_us",
                reason: format!(
                    "sent at {} µs, before the probe arrived at {} µs",
                    reply.server_send_us, reply.server_receive_us
                ),
            });
        }
        Ok(reply)
    }
}
