//! `ProgrammeStart`: announces a programme on an audio stream.

use bytes::{Buf, BufMut};

use crate::codec::{decode_string, decode_u16, decode_u64, decode_u8, encode_string, prefixed_len};
use crate::{Decode, DecodeError, Encode};

/// Why a programme is on air: its bulletin level under TT39/2020, or the live studio.
///
/// Carried so proof of play can tell, years later, which broadcasts were emergencies.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum ProgrammeLevel {
    /// "thường": scheduled programmes and normal bulletins.
    #[default]
    Normal = 0,
    /// "ưu tiên".
    Priority = 1,
    /// "khẩn cấp": storms, fire, epidemic.
    Emergency = 2,
    /// The district's live studio (where it ranks is the server's configuration).
    Live = 3,
}

impl ProgrammeLevel {
    /// Every level, in wire order.
    pub const ALL: [ProgrammeLevel; 4] = [
        ProgrammeLevel::Normal,
        ProgrammeLevel::Priority,
        ProgrammeLevel::Emergency,
        ProgrammeLevel::Live,
    ];

    pub(crate) fn from_u8(v: u8) -> Result<Self, DecodeError> {
        Self::ALL
            .get(usize::from(v))
            .copied()
            .ok_or_else(|| DecodeError::Invalid {
                field: "level",
                reason: format!("unknown programme level {v}"),
            })
    }

    pub(crate) fn decode<B: Buf>(buf: &mut B) -> Result<Self, DecodeError> {
        Self::from_u8(decode_u8(buf)?)
    }

    /// The English word used in reports and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            ProgrammeLevel::Normal => "normal",
            ProgrammeLevel::Priority => "priority",
            ProgrammeLevel::Emergency => "emergency",
            ProgrammeLevel::Live => "live",
        }
    }

    /// The Vietnamese word operators know.
    pub fn vietnamese(self) -> &'static str {
        match self {
            ProgrammeLevel::Normal => "thường",
            ProgrammeLevel::Priority => "ưu tiên",
            ProgrammeLevel::Emergency => "khẩn cấp",
            ProgrammeLevel::Live => "trực tiếp",
        }
    }
}

/// Precedes the first `AudioFrame` of a programme on its audio stream.
///
/// Announcing the first sequence and timestamp lets an agent that joins or
/// reconnects mid-stream tell "new programme" apart from "lost frames".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgrammeStart {
    pub channel: u16,
    pub programme_id: u64,
    /// Human-readable title, at most [`ProgrammeStart::MAX_NAME`] bytes.
    pub name: String,
    pub first_sequence: u64,
    pub first_timestamp: u64,
    /// Total frames when known in advance (a file); 0 for live input.
    pub frame_count: u64,
    pub level: ProgrammeLevel,
}

impl ProgrammeStart {
    pub const MAX_NAME: usize = 256;
    /// Largest body a valid `ProgrammeStart` can have.
    pub const MAX_BODY_LEN: usize = 2 + 8 + prefixed_len(Self::MAX_NAME) + 8 + 8 + 8 + 1;
}

impl Encode for ProgrammeStart {
    fn encode<B: BufMut>(&self, buf: &mut B) {
        buf.put_u16(self.channel);
        buf.put_u64(self.programme_id);
        encode_string(buf, &self.name);
        buf.put_u64(self.first_sequence);
        buf.put_u64(self.first_timestamp);
        buf.put_u64(self.frame_count);
        buf.put_u8(self.level as u8);
    }

    fn encoded_len(&self) -> usize {
        2 + 8 + prefixed_len(self.name.len()) + 8 + 8 + 8 + 1
    }
}

impl Decode for ProgrammeStart {
    fn decode<B: Buf>(buf: &mut B) -> Result<Self, DecodeError> {
        Ok(ProgrammeStart {
            channel: decode_u16(buf)?,
            programme_id: decode_u64(buf)?,
            name: decode_string(buf, "name", Self::MAX_NAME)?,
            first_sequence: decode_u64(buf)?,
            first_timestamp: decode_u64(buf)?,
            frame_count: decode_u64(buf)?,
            level: ProgrammeLevel::decode(buf)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_body_len_is_tight() {
        let p = ProgrammeStart {
            channel: 1,
            programme_id: 2,
            name: "é".repeat(ProgrammeStart::MAX_NAME / 2),
            first_sequence: 3,
            first_timestamp: 4,
            frame_count: 5,
            level: ProgrammeLevel::Live,
        };
        assert_eq!(p.name.len(), ProgrammeStart::MAX_NAME);
        assert_eq!(p.encoded_len(), ProgrammeStart::MAX_BODY_LEN);
    }
}

#[cfg(test)]
mod level_tests {
    use super::*;

    #[test]
    fn levels_round_trip_and_unknown_ones_are_refused() {
        for level in ProgrammeLevel::ALL {
            assert_eq!(ProgrammeLevel::from_u8(level as u8), Ok(level));
        }
        assert!(ProgrammeLevel::from_u8(4).is_err());
    }
}
