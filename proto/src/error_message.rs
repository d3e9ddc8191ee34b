//! `Error`: the last message a side sends before closing.

use bytes::{Buf, BufMut};

use crate::codec::{decode_string, decode_u16, encode_string, prefixed_len};
use crate::{Decode, DecodeError, Encode, ErrorCode};

/// Tells the peer why the session is being closed.
///
/// A code this version does not know decodes as [`ErrorCode::Internal`]
/// rather than failing: the peer is closing either way, and turning its
/// goodbye into a `Malformed` error would hide the real reason, which still
/// travels in `reason`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorMessage {
    pub code: ErrorCode,
    /// Human-readable detail, at most [`ErrorMessage::MAX_REASON`] bytes.
    pub reason: String,
}

impl ErrorMessage {
    pub const MAX_REASON: usize = 256;
    /// Largest body a valid `ErrorMessage` can have.
    pub const MAX_BODY_LEN: usize = 2 + prefixed_len(Self::MAX_REASON);
}

impl Encode for ErrorMessage {
    fn encode<B: BufMut>(&self, buf: &mut B) {
        buf.put_u16(self.code.as_u16());
        encode_string(buf, &self.reason);
    }

    fn encoded_len(&self) -> usize {
        2 + prefixed_len(self.reason.len())
    }
}

impl Decode for ErrorMessage {
    fn decode<B: Buf>(buf: &mut B) -> Result<Self, DecodeError> {
        let code = ErrorCode::from_u16(decode_u16(buf)?).unwrap_or(ErrorCode::Internal);
        let reason = decode_string(buf, "reason", Self::MAX_REASON)?;
        Ok(ErrorMessage { code, reason })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_code_decodes_as_internal() {
        let mut body = vec![0x12, 0x34];
        encode_string(&mut body, "future");
        let msg = ErrorMessage::decode(&mut &body[..]).expect("must not fail");
        assert_eq!(msg.code, ErrorCode::Internal);
        assert_eq!(msg.reason, "future");
    }

    #[test]
    fn max_body_len_is_tight() {
        let e = ErrorMessage {
            code: ErrorCode::Busy,
            reason: "r".repeat(ErrorMessage::MAX_REASON),
        };
        assert_eq!(e.encoded_len(), ErrorMessage::MAX_BODY_LEN);
    }
}
