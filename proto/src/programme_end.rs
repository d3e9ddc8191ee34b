//! `ProgrammeEnd`: closes a programme on an audio stream.

use bytes::{Buf, BufMut};

use crate::codec::{decode_u16, decode_u64};
use crate::{Decode, DecodeError, Encode};

/// Follows the last `AudioFrame` of a programme.
///
/// States the last sequence and frame count so the agent can tell a clean end
/// from a stream cut short, and count frames lost at the tail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgrammeEnd {
    pub channel: u16,
    pub programme_id: u64,
    pub last_sequence: u64,
    /// Frames actually sent for this programme.
    pub frames: u64,
}

impl ProgrammeEnd {
    /// Every `ProgrammeEnd` body has this size.
    pub const MAX_BODY_LEN: usize = 2 + 8 + 8 + 8;
}

impl Encode for ProgrammeEnd {
    fn encode<B: BufMut>(&self, buf: &mut B) {
        buf.put_u16(self.channel);
        buf.put_u64(self.programme_id);
        buf.put_u64(self.last_sequence);
        buf.put_u64(self.frames);
    }

    fn encoded_len(&self) -> usize {
        Self::MAX_BODY_LEN
    }
}

impl Decode for ProgrammeEnd {
    fn decode<B: Buf>(buf: &mut B) -> Result<Self, DecodeError> {
        Ok(ProgrammeEnd {
            channel: decode_u16(buf)?,
            programme_id: decode_u64(buf)?,
            last_sequence: decode_u64(buf)?,
            frames: decode_u64(buf)?,
        })
    }
}
