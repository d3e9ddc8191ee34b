//! `JournalAck`: the server has stored a journal batch durably.

use bytes::{Buf, BufMut};

use crate::codec::decode_u64;
use crate::{Decode, DecodeError, Encode};

/// Sent by the server once the records `first_seq..=last_seq` of a [`crate::JournalBatch`]
/// are on disk (flushed). Only then may the agent delete them: a batch whose acknowledgement
/// is lost is sent again and stored once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JournalAck {
    /// The batch's [`crate::JournalBatch::journal_id`].
    pub journal_id: u64,
    pub first_seq: u64,
    pub last_seq: u64,
}

impl JournalAck {
    /// Every `JournalAck` body has this size.
    pub const MAX_BODY_LEN: usize = 8 + 8 + 8;
}

impl Encode for JournalAck {
    fn encode<B: BufMut>(&self, buf: &mut B) {
        buf.put_u64(self.journal_id);
        buf.put_u64(self.first_seq);
        buf.put_u64(self.last_seq);
    }

    fn encoded_len(&self) -> usize {
        Self::MAX_BODY_LEN
    }
}

impl Decode for JournalAck {
    fn decode<B: Buf>(buf: &mut B) -> Result<Self, DecodeError> {
        let ack = JournalAck {
            journal_id: decode_u64(buf)?,
            first_seq: decode_u64(buf)?,
            last_seq: decode_u64(buf)?,
        };
        if ack.first_seq == 0 || ack.last_seq < ack.first_seq {
            return Err(DecodeError::Invalid {
                field: "last_seq",
                reason: format!("range {}..={} is empty", ack.first_seq, ack.last_seq),
            });
        }
        Ok(ack)
    }
}
