//! The frame: one type byte, a varint body length, then the body.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::codec::{decode_u8, decode_varint, encode_varint, varint_len};
use crate::{
    AudioFrame, BoxHealth, ClockProbe, ClockReply, Decode, DecodeError, Encode, ErrorMessage,
    Heartbeat, Hello, JournalAck, JournalBatch, PrefetchChunk, PrefetchManifest, ProgrammeEnd,
    ProgrammeStart, Welcome,
};

/// The type byte at the start of every frame.
///
/// Values are grouped by purpose (0x0_ handshake, 0x1_ audio stream,
/// 0x2_ liveness, clock and the box's health, 0x3_ errors, 0x4_ the uptime journal, 0x5_ prefetch) and are part of
/// the wire format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum MessageType {
    Hello = 0x01,
    Welcome = 0x02,
    AudioFrame = 0x10,
    ProgrammeStart = 0x11,
    ProgrammeEnd = 0x12,
    Heartbeat = 0x20,
    ClockProbe = 0x21,
    ClockReply = 0x22,
    BoxHealth = 0x23,
    Error = 0x30,
    JournalBatch = 0x40,
    JournalAck = 0x41,
    PrefetchManifest = 0x50,
    PrefetchChunk = 0x51,
}

impl MessageType {
    /// Every message type, in numeric order.
    pub const ALL: [MessageType; 14] = [
        MessageType::Hello,
        MessageType::Welcome,
        MessageType::AudioFrame,
        MessageType::ProgrammeStart,
        MessageType::ProgrammeEnd,
        MessageType::Heartbeat,
        MessageType::ClockProbe,
        MessageType::ClockReply,
        MessageType::BoxHealth,
        MessageType::Error,
        MessageType::JournalBatch,
        MessageType::JournalAck,
        MessageType::PrefetchManifest,
        MessageType::PrefetchChunk,
    ];

    pub fn as_u8(self) -> u8 {
        self as u8
    }

    /// Largest body a valid message of this type can have.
    ///
    /// Exactly the size of the largest valid body, so a declared length above
    /// it is already proof of a bad frame and can be refused before any of
    /// the body is buffered.
    pub fn max_body_len(self) -> usize {
        match self {
            MessageType::Hello => Hello::MAX_BODY_LEN,
            MessageType::Welcome => Welcome::MAX_BODY_LEN,
            MessageType::AudioFrame => AudioFrame::MAX_BODY_LEN,
            MessageType::ProgrammeStart => ProgrammeStart::MAX_BODY_LEN,
            MessageType::ProgrammeEnd => ProgrammeEnd::MAX_BODY_LEN,
            MessageType::Heartbeat => Heartbeat::MAX_BODY_LEN,
            MessageType::ClockProbe => ClockProbe::MAX_BODY_LEN,
            MessageType::ClockReply => ClockReply::MAX_BODY_LEN,
            MessageType::BoxHealth => BoxHealth::MAX_BODY_LEN,
            MessageType::Error => ErrorMessage::MAX_BODY_LEN,
            MessageType::JournalBatch => JournalBatch::MAX_BODY_LEN,
            MessageType::JournalAck => JournalAck::MAX_BODY_LEN,
            MessageType::PrefetchManifest => PrefetchManifest::MAX_BODY_LEN,
            MessageType::PrefetchChunk => PrefetchChunk::MAX_BODY_LEN,
        }
    }
}

impl TryFrom<u8> for MessageType {
    type Error = DecodeError;

    fn try_from(v: u8) -> Result<Self, DecodeError> {
        MessageType::ALL
            .into_iter()
            .find(|t| t.as_u8() == v)
            .ok_or(DecodeError::UnknownType(v))
    }
}

impl From<MessageType> for u8 {
    fn from(t: MessageType) -> u8 {
        t.as_u8()
    }
}

/// Any protocol message, as carried in a frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Hello(Hello),
    Welcome(Welcome),
    AudioFrame(AudioFrame),
    Heartbeat(Heartbeat),
    ClockProbe(ClockProbe),
    ClockReply(ClockReply),
    BoxHealth(BoxHealth),
    ProgrammeStart(ProgrammeStart),
    ProgrammeEnd(ProgrammeEnd),
    Error(ErrorMessage),
    JournalBatch(JournalBatch),
    JournalAck(JournalAck),
    PrefetchManifest(PrefetchManifest),
    PrefetchChunk(PrefetchChunk),
}

impl Message {
    pub fn message_type(&self) -> MessageType {
        match self {
            Message::Hello(_) => MessageType::Hello,
            Message::Welcome(_) => MessageType::Welcome,
            Message::AudioFrame(_) => MessageType::AudioFrame,
            Message::Heartbeat(_) => MessageType::Heartbeat,
            Message::ClockProbe(_) => MessageType::ClockProbe,
            Message::ClockReply(_) => MessageType::ClockReply,
            Message::BoxHealth(_) => MessageType::BoxHealth,
            Message::ProgrammeStart(_) => MessageType::ProgrammeStart,
            Message::ProgrammeEnd(_) => MessageType::ProgrammeEnd,
            Message::Error(_) => MessageType::Error,
            Message::JournalBatch(_) => MessageType::JournalBatch,
            Message::JournalAck(_) => MessageType::JournalAck,
            Message::PrefetchManifest(_) => MessageType::PrefetchManifest,
            Message::PrefetchChunk(_) => MessageType::PrefetchChunk,
        }
    }

    /// The complete frame (header and body), ready to write to a stream.
    pub fn to_bytes(&self) -> Bytes {
        let mut buf = BytesMut::with_capacity(self.encoded_len());
        self.encode(&mut buf);
        buf.freeze()
    }

    fn body_len(&self) -> usize {
        match self {
            Message::Hello(m) => m.encoded_len(),
            Message::Welcome(m) => m.encoded_len(),
            Message::AudioFrame(m) => m.encoded_len(),
            Message::Heartbeat(m) => m.encoded_len(),
            Message::ClockProbe(m) => m.encoded_len(),
            Message::ClockReply(m) => m.encoded_len(),
            Message::BoxHealth(m) => m.encoded_len(),
            Message::ProgrammeStart(m) => m.encoded_len(),
            Message::ProgrammeEnd(m) => m.encoded_len(),
            Message::Error(m) => m.encoded_len(),
            Message::JournalBatch(m) => m.encoded_len(),
            Message::JournalAck(m) => m.encoded_len(),
            Message::PrefetchManifest(m) => m.encoded_len(),
            Message::PrefetchChunk(m) => m.encoded_len(),
        }
    }

    fn encode_body<B: BufMut>(&self, buf: &mut B) {
        match self {
            Message::Hello(m) => m.encode(buf),
            Message::Welcome(m) => m.encode(buf),
            Message::AudioFrame(m) => m.encode(buf),
            Message::Heartbeat(m) => m.encode(buf),
            Message::ClockProbe(m) => m.encode(buf),
            Message::ClockReply(m) => m.encode(buf),
            Message::BoxHealth(m) => m.encode(buf),
            Message::ProgrammeStart(m) => m.encode(buf),
            Message::ProgrammeEnd(m) => m.encode(buf),
            Message::Error(m) => m.encode(buf),
            Message::JournalBatch(m) => m.encode(buf),
            Message::JournalAck(m) => m.encode(buf),
            Message::PrefetchManifest(m) => m.encode(buf),
            Message::PrefetchChunk(m) => m.encode(buf),
        }
    }
}

/// Decodes a complete body and insists it is used up exactly, so that a
/// sender and receiver disagreeing about a layout fail loudly instead of
/// silently ignoring fields.
pub(crate) fn decode_body(kind: MessageType, mut body: Bytes) -> Result<Message, DecodeError> {
    let body = &mut body;
    let msg = match kind {
        MessageType::Hello => Message::Hello(Hello::decode(body)?),
        MessageType::Welcome => Message::Welcome(Welcome::decode(body)?),
        MessageType::AudioFrame => Message::AudioFrame(AudioFrame::decode(body)?),
        MessageType::Heartbeat => Message::Heartbeat(Heartbeat::decode(body)?),
        MessageType::ClockProbe => Message::ClockProbe(ClockProbe::decode(body)?),
        MessageType::ClockReply => Message::ClockReply(ClockReply::decode(body)?),
        MessageType::BoxHealth => Message::BoxHealth(BoxHealth::decode(body)?),
        MessageType::ProgrammeStart => Message::ProgrammeStart(ProgrammeStart::decode(body)?),
        MessageType::ProgrammeEnd => Message::ProgrammeEnd(ProgrammeEnd::decode(body)?),
        MessageType::Error => Message::Error(ErrorMessage::decode(body)?),
        MessageType::JournalBatch => Message::JournalBatch(JournalBatch::decode(body)?),
        MessageType::JournalAck => Message::JournalAck(JournalAck::decode(body)?),
        MessageType::PrefetchManifest => Message::PrefetchManifest(PrefetchManifest::decode(body)?),
        MessageType::PrefetchChunk => Message::PrefetchChunk(PrefetchChunk::decode(body)?),
    };
    match body.remaining() {
        0 => Ok(msg),
        n => Err(DecodeError::TrailingBytes(n)),
    }
}

/// Checks a declared body length against the type's limit.
pub(crate) fn check_body_len(kind: MessageType, len: u64) -> Result<usize, DecodeError> {
    let max = kind.max_body_len();
    if len > max as u64 {
        return Err(DecodeError::TooLarge {
            kind,
            len: usize::try_from(len).unwrap_or(usize::MAX),
            max,
        });
    }
    // Lossless: len <= max, which is a usize.
    Ok(len as usize)
}

impl Encode for Message {
    fn encode<B: BufMut>(&self, buf: &mut B) {
        buf.put_u8(self.message_type().as_u8());
        encode_varint(buf, self.body_len() as u64);
        self.encode_body(buf);
    }

    fn encoded_len(&self) -> usize {
        let body = self.body_len();
        1 + varint_len(body as u64) + body
    }
}

impl Decode for Message {
    /// Decodes one whole frame.
    ///
    /// `Truncated` means the frame is incomplete. The declared length is
    /// checked before the body is copied, so at most the type's
    /// [`MessageType::max_body_len`] bytes are ever allocated.
    fn decode<B: Buf>(buf: &mut B) -> Result<Self, DecodeError> {
        let kind = MessageType::try_from(decode_u8(buf)?)?;
        let len = check_body_len(kind, decode_varint(buf)?)?;
        if buf.remaining() < len {
            return Err(DecodeError::Truncated);
        }
        decode_body(kind, buf.copy_to_bytes(len))
    }
}

macro_rules! impl_from {
    ($($variant:ident($ty:ty)),* $(,)?) => {
        $(impl From<$ty> for Message {
            fn from(m: $ty) -> Message {
                Message::$variant(m)
            }
        })*
    };
}

impl_from!(
    Hello(Hello),
    Welcome(Welcome),
    AudioFrame(AudioFrame),
    Heartbeat(Heartbeat),
    ClockProbe(ClockProbe),
    ClockReply(ClockReply),
    BoxHealth(BoxHealth),
    ProgrammeStart(ProgrammeStart),
    ProgrammeEnd(ProgrammeEnd),
    Error(ErrorMessage),
    JournalBatch(JournalBatch),
    JournalAck(JournalAck),
    PrefetchManifest(PrefetchManifest),
    PrefetchChunk(PrefetchChunk),
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ErrorCode, MAX_FRAME_SIZE};

    #[test]
    fn every_max_frame_fits_the_absolute_cap() {
        for kind in MessageType::ALL {
            let max = kind.max_body_len();
            assert!(
                1 + varint_len(max as u64) + max <= MAX_FRAME_SIZE,
                "{kind:?}"
            );
        }
    }

    #[test]
    fn header_layout() {
        let msg = Message::Error(ErrorMessage {
            code: ErrorCode::Busy,
            reason: "x".repeat(100),
        });
        let bytes = msg.to_bytes();
        // Body: code (2) + reason length varint (2, as 100 > 63) + 100.
        // Frame: type, a 2-byte varint for 104, then code 12 big-endian.
        assert_eq!(&bytes[..7], &[0x30, 0x40, 104, 0x00, 0x0c, 0x40, 100]);
        assert_eq!(bytes.len(), msg.encoded_len());
        assert_eq!(bytes.len(), 3 + 104);
    }

    #[test]
    fn trailing_bytes_rejected() {
        let hb = Heartbeat {
            sequence: 1,
            unix_ms: 2,
            frames_received: 3,
            frames_played: 4,
            frames_lost: 5,
            on_air: true,
        };
        let mut body = Vec::new();
        hb.encode(&mut body);
        body.push(0);
        // Heartbeat bodies are fixed-size, so a longer one is also over the limit.
        let mut frame = vec![0x20];
        encode_varint(&mut frame, body.len() as u64);
        frame.extend_from_slice(&body);
        assert!(matches!(
            Message::decode(&mut &frame[..]),
            Err(DecodeError::TooLarge {
                kind: MessageType::Heartbeat,
                len: 42,
                max: 41
            })
        ));

        // A short Error body padded inside its limit shows TrailingBytes itself.
        let mut body = vec![0x00, 0x01, 0x02, b'h', b'i', 0xff, 0xff];
        let mut frame = vec![0x30];
        encode_varint(&mut frame, body.len() as u64);
        frame.append(&mut body);
        assert_eq!(
            Message::decode(&mut &frame[..]),
            Err(DecodeError::TrailingBytes(2))
        );
    }

    #[test]
    fn incomplete_frames_are_truncated() {
        let frame = Message::Heartbeat(Heartbeat {
            sequence: 0,
            unix_ms: 0,
            frames_received: 0,
            frames_played: 0,
            frames_lost: 0,
            on_air: false,
        })
        .to_bytes();
        for cut in 0..frame.len() {
            assert_eq!(
                Message::decode(&mut &frame[..cut]),
                Err(DecodeError::Truncated),
                "cut at {cut}"
            );
        }
        assert!(Message::decode(&mut &frame[..]).is_ok());
    }
}
