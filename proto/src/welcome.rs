//! `Welcome`: the server's acceptance of an agent's `Hello`.

use bytes::{Buf, BufMut};

use crate::codec::{
    decode_string, decode_u16, decode_u32, decode_u64, encode_string, prefixed_len,
};
use crate::{Decode, DecodeError, Encode};

/// Completes the handshake and fixes the session parameters.
///
/// The audio format is stated here rather than assumed so an agent can refuse
/// a server whose stream it cannot play, instead of playing it at the wrong speed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Welcome {
    pub version: u16,
    /// At most [`Welcome::MAX_SERVER_NAME`] bytes.
    pub server_name: String,
    /// Identifies this connection in both sides' logs.
    pub session_id: u64,
    /// How often both sides send `Heartbeat`s; overrides the agent's own setting.
    pub heartbeat_interval_ms: u32,
    pub sample_rate: u32,
    pub frame_samples: u32,
}

impl Welcome {
    pub const MAX_SERVER_NAME: usize = 64;
    /// Largest body a valid `Welcome` can have.
    pub const MAX_BODY_LEN: usize = 2 + prefixed_len(Self::MAX_SERVER_NAME) + 8 + 4 + 4 + 4;
}

impl Encode for Welcome {
    fn encode<B: BufMut>(&self, buf: &mut B) {
        buf.put_u16(self.version);
        encode_string(buf, &self.server_name);
        buf.put_u64(self.session_id);
        buf.put_u32(self.heartbeat_interval_ms);
        buf.put_u32(self.sample_rate);
        buf.put_u32(self.frame_samples);
    }

    fn encoded_len(&self) -> usize {
        2 + prefixed_len(self.server_name.len()) + 8 + 4 + 4 + 4
    }
}

impl Decode for Welcome {
    fn decode<B: Buf>(buf: &mut B) -> Result<Self, DecodeError> {
        Ok(Welcome {
            version: decode_u16(buf)?,
            server_name: decode_string(buf, "server_name", Self::MAX_SERVER_NAME)?,
            session_id: decode_u64(buf)?,
            heartbeat_interval_ms: decode_u32(buf)?,
            sample_rate: decode_u32(buf)?,
            frame_samples: decode_u32(buf)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_body_len_is_tight() {
        let w = Welcome {
            version: 1,
            server_name: "n".repeat(Welcome::MAX_SERVER_NAME),
            session_id: u64::MAX,
            heartbeat_interval_ms: u32::MAX,
            sample_rate: u32::MAX,
            frame_samples: u32::MAX,
        };
        assert_eq!(w.encoded_len(), Welcome::MAX_BODY_LEN);
    }
}
