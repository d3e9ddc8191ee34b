//! `Hello`: the agent's opening message on the control stream.

use std::ops::{BitOr, BitOrAssign};

use bytes::{Buf, BufMut};

use crate::codec::{decode_string, decode_u16, decode_u32, encode_string, prefixed_len};
use crate::{Decode, DecodeError, Encode};

/// First message an agent sends: who it is and what it can do.
///
/// `agent_id` is a claim only; the server checks it against the agent's
/// client certificate and answers `IdentityMismatch` when they differ.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    pub version: u16,
    /// At most [`Hello::MAX_AGENT_ID`] bytes.
    pub agent_id: String,
    /// Free-form build string for diagnostics, at most [`Hello::MAX_SOFTWARE`] bytes.
    pub software: String,
    pub capabilities: Capabilities,
}

impl Hello {
    pub const MAX_AGENT_ID: usize = 64;
    pub const MAX_SOFTWARE: usize = 64;
    /// Largest body a valid `Hello` can have.
    pub const MAX_BODY_LEN: usize =
        2 + prefixed_len(Self::MAX_AGENT_ID) + prefixed_len(Self::MAX_SOFTWARE) + 4;
}

impl Encode for Hello {
    fn encode<B: BufMut>(&self, buf: &mut B) {
        buf.put_u16(self.version);
        encode_string(buf, &self.agent_id);
        encode_string(buf, &self.software);
        buf.put_u32(self.capabilities.0);
    }

    fn encoded_len(&self) -> usize {
        2 + prefixed_len(self.agent_id.len()) + prefixed_len(self.software.len()) + 4
    }
}

impl Decode for Hello {
    fn decode<B: Buf>(buf: &mut B) -> Result<Self, DecodeError> {
        Ok(Hello {
            version: decode_u16(buf)?,
            agent_id: decode_string(buf, "agent_id", Self::MAX_AGENT_ID)?,
            software: decode_string(buf, "software", Self::MAX_SOFTWARE)?,
            capabilities: Capabilities(decode_u32(buf)?),
        })
    }
}

/// Bit set of agent features.
///
/// Unknown bits are kept, not rejected: capabilities are how later versions
/// extend the protocol without bumping [`crate::PROTOCOL_VERSION`], so an
/// older server must tolerate bits it does not understand.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Capabilities(pub u32);

impl Capabilities {
    pub const NONE: Capabilities = Capabilities(0);
    /// Can decode Opus audio.
    pub const OPUS: Capabilities = Capabilities(1);
    /// Can forward audio as RTP.
    pub const RTP_SINK: Capabilities = Capabilities(2);
    /// Can record audio to WAV files.
    pub const WAV_SINK: Capabilities = Capabilities(4);
    /// Can write raw audio to a pipe.
    pub const PIPE_SINK: Capabilities = Capabilities(8);
    /// Keeps a prefetch cache: the server may open prefetch streams to it
    /// (`PrefetchManifest`, `PrefetchChunk`).
    pub const PREFETCH: Capabilities = Capabilities(16);
    /// Sends `BoxHealth` reports: a server only receives them from agents announcing this.
    pub const BOX_HEALTH: Capabilities = Capabilities(32);

    /// True when every bit of `other` is set in `self`.
    pub fn contains(self, other: Capabilities) -> bool {
        self.0 & other.0 == other.0
    }
}

impl BitOr for Capabilities {
    type Output = Capabilities;

    fn bitor(self, rhs: Capabilities) -> Capabilities {
        Capabilities(self.0 | rhs.0)
    }
}

impl BitOrAssign for Capabilities {
    fn bitor_assign(&mut self, rhs: Capabilities) {
        self.0 |= rhs.0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capabilities_union_and_contains() {
        let caps = Capabilities::OPUS | Capabilities::WAV_SINK;
        assert_eq!(caps, Capabilities(5));
        assert!(caps.contains(Capabilities::OPUS));
        assert!(caps.contains(Capabilities::WAV_SINK));
        assert!(caps.contains(Capabilities::OPUS | Capabilities::WAV_SINK));
        assert!(!caps.contains(Capabilities::RTP_SINK));
        assert!(!caps.contains(Capabilities::OPUS | Capabilities::PIPE_SINK));
        assert!(caps.contains(Capabilities::NONE));
        let mut c = Capabilities::NONE;
        c |= Capabilities::PIPE_SINK;
        assert_eq!(c, Capabilities(8));
    }

    #[test]
    fn max_body_len_is_tight() {
        let hello = Hello {
            version: 1,
            agent_id: "a".repeat(Hello::MAX_AGENT_ID),
            software: "s".repeat(Hello::MAX_SOFTWARE),
            capabilities: Capabilities(u32::MAX),
        };
        assert_eq!(hello.encoded_len(), Hello::MAX_BODY_LEN);
    }
}
