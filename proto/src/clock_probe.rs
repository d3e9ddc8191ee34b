//! `ClockProbe`: the agent asks for the server's media clock.

use bytes::{Buf, BufMut};

use crate::codec::{decode_u32, decode_u64};
use crate::{Decode, Encode};

/// First half of an NTP-style exchange: the agent's send time. The server answers with a
/// [`crate::ClockReply`] carrying its own receive and send times, from which the agent derives
/// the offset of the server's media clock and the round trip.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClockProbe {
    /// Chosen by the agent, echoed in the reply: a reply to an old or unknown probe is ignored.
    pub id: u32,
    /// The agent's clock when it sent the probe (t1), in microseconds on its own monotonic
    /// clock; echoed so the agent need not remember it.
    pub agent_send_us: u64,
}

impl ClockProbe {
    /// Every `ClockProbe` body has this size.
    pub const MAX_BODY_LEN: usize = 4 + 8;
}

impl Encode for ClockProbe {
    fn encode<B: BufMut>(&self, buf: &mut B) {
        buf.put_u32(self.id);
        buf.put_u64(self.agent_send_us);
    }

    fn encoded_len(&self) -> usize {
        Self::MAX_BODY_LEN
    }
}

impl Decode for ClockProbe {
    fn decode<B: Buf>(buf: &mut B) -> Result<Self, crate::DecodeError> {
        Ok(ClockProbe {
            id: decode_u32(buf)?,
            agent_send_us: decode_u64(buf)?,
        })
    }
}
